// Route objects for the validation tests: validate.test.ts checks shoal's answers, apiServer.test.ts that a real
// API server (the pinned CRDs) answers the same.
import type { GatewayRoute } from '../../../discover/topology/model.ts';

export const parent = { group: '', kind: 'Service', name: 'api' };
export const backend = { name: 'api-v1', port: 8080 };

/** [what, spec, kind, the first error's start]: objects the API server refuses. */
export const BAD: Array<[string, Record<string, unknown>, GatewayRoute['kind'], string]> = [
  [
    'an unknown field',
    { parentRefs: [parent], rules: [{ backendRefs: [backend], bogus: 1 }] },
    'HTTPRoute',
    'spec.rules[0]: unknown field "bogus"',
  ],
  [
    'a path type the enum lacks',
    { rules: [{ matches: [{ path: { type: 'Glob', value: '/a' } }] }] },
    'HTTPRoute',
    'spec.rules[0].matches[0].path.type: Unsupported value',
  ],
  [
    'a relative path (CEL)',
    { rules: [{ matches: [{ path: { type: 'PathPrefix', value: 'a' } }] }] },
    'HTTPRoute',
    'spec.rules[0].matches[0].path: Invalid value: value must be an absolute path',
  ],
  [
    'a path with //',
    { rules: [{ matches: [{ path: { type: 'Exact', value: '/a//b' } }] }] },
    'HTTPRoute',
    "spec.rules[0].matches[0].path: Invalid value: must not contain '//'",
  ],
  [
    'a Service backendRef without port',
    { rules: [{ backendRefs: [{ name: 'x' }] }] },
    'HTTPRoute',
    'spec.rules[0].backendRefs[0]: Invalid value: Must have port for Service reference',
  ],
  [
    'a weight out of range',
    { rules: [{ backendRefs: [{ ...backend, weight: 1000001 }] }] },
    'HTTPRoute',
    'spec.rules[0].backendRefs[0].weight: must be <= 1000000',
  ],
  [
    'a header name with a space',
    { rules: [{ matches: [{ headers: [{ name: 'a b', value: 'c' }] }] }] },
    'HTTPRoute',
    'spec.rules[0].matches[0].headers[0].name: must match pattern',
  ],
  [
    'a redirect with backendRefs',
    { rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 301 } }], backendRefs: [backend] }] },
    'HTTPRoute',
    'spec.rules[0]: Invalid value: RequestRedirect filter must not be used together with backendRefs',
  ],
  [
    'redirect and rewrite together',
    {
      rules: [
        {
          filters: [
            { type: 'RequestRedirect', requestRedirect: {} },
            { type: 'URLRewrite', urlRewrite: {} },
          ],
        },
      ],
    },
    'HTTPRoute',
    'spec.rules[0].filters: Invalid value: May specify either',
  ],
  [
    'a filter without its field',
    { rules: [{ filters: [{ type: 'RequestHeaderModifier' }], backendRefs: [backend] }] },
    'HTTPRoute',
    'spec.rules[0].filters[0]: Invalid value: filter.requestHeaderModifier must be specified',
  ],
  [
    'a filter repeated',
    {
      rules: [
        {
          filters: [
            { type: 'RequestHeaderModifier', requestHeaderModifier: {} },
            { type: 'RequestHeaderModifier', requestHeaderModifier: {} },
          ],
          backendRefs: [backend],
        },
      ],
    },
    'HTTPRoute',
    'spec.rules[0].filters: Invalid value: RequestHeaderModifier filter cannot be repeated',
  ],
  [
    'ReplacePrefixMatch without one PathPrefix match',
    {
      rules: [
        {
          matches: [{ path: { type: 'Exact', value: '/a' } }],
          filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }],
          backendRefs: [backend],
        },
      ],
    },
    'HTTPRoute',
    'spec.rules[0]: Invalid value: When using URLRewrite filter with path.replacePrefixMatch',
  ],
  [
    'replaceFullPath with the wrong type',
    {
      rules: [
        {
          filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replaceFullPath: '/b' } } }],
          backendRefs: [backend],
        },
      ],
    },
    'HTTPRoute',
    'spec.rules[0].filters[0].urlRewrite.path: Invalid value:',
  ],
  [
    'mirror percent and fraction',
    {
      rules: [
        {
          filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend, percent: 5, fraction: { numerator: 1 } } }],
          backendRefs: [backend],
        },
      ],
    },
    'HTTPRoute',
    'spec.rules[0].filters[0].requestMirror: Invalid value: Only one of percent or fraction',
  ],
  [
    'a fraction over 1',
    {
      rules: [
        {
          filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend, fraction: { numerator: 3, denominator: 2 } } }],
          backendRefs: [backend],
        },
      ],
    },
    'HTTPRoute',
    'spec.rules[0].filters[0].requestMirror.fraction: Invalid value: numerator must be less than or equal to denominator',
  ],
  [
    'backendRequest longer than request',
    { rules: [{ backendRefs: [backend], timeouts: { request: '1s', backendRequest: '2s' } }] },
    'HTTPRoute',
    'spec.rules[0].timeouts: Invalid value: backendRequest timeout cannot be longer than request timeout',
  ],
  [
    'a duration Gateway API does not allow',
    { rules: [{ backendRefs: [backend], timeouts: { request: '1.5s' } }] },
    'HTTPRoute',
    'spec.rules[0].timeouts.request: must match pattern',
  ],
  [
    'retry attempts 0',
    { rules: [{ backendRefs: [backend], retry: { attempts: 0 } }] },
    'HTTPRoute',
    'spec.rules[0].retry.attempts: must be >= 1',
  ],
  [
    'a retry code below 400',
    { rules: [{ backendRefs: [backend], retry: { codes: [302] } }] },
    'HTTPRoute',
    'spec.rules[0].retry.codes[0]: must be >= 400',
  ],
  [
    'two rules of one name',
    {
      rules: [
        { name: 'a', backendRefs: [backend] },
        { name: 'a', backendRefs: [backend] },
      ],
    },
    'HTTPRoute',
    'spec.rules: Invalid value: Rule name must be unique',
  ],
  [
    'a parent named twice without port',
    { parentRefs: [parent, parent] },
    'HTTPRoute',
    'spec.parentRefs: Invalid value: sectionName or port must be unique',
  ],
  [
    'a parent twice, once with port',
    { parentRefs: [parent, { ...parent, port: 80 }] },
    'HTTPRoute',
    'spec.parentRefs: Invalid value: sectionName or port must be specified',
  ],
  [
    'more than 16 rules',
    { rules: Array.from({ length: 17 }, () => ({ backendRefs: [backend] })) },
    'HTTPRoute',
    'spec.rules: must NOT have more than 16 items',
  ],
  [
    'a gRPC method with a dot',
    { rules: [{ matches: [{ method: { service: 'a.B', method: 'x.y' } }] }] },
    'GRPCRoute',
    'spec.rules[0].matches[0].method: Invalid value: method must only contain valid characters',
  ],
  [
    'a gRPC method match with neither service nor method',
    { rules: [{ matches: [{ method: { type: 'Exact' } }] }] },
    'GRPCRoute',
    "spec.rules[0].matches[0].method: Invalid value: One or both of 'service' or 'method' must be specified",
  ],
  [
    'an HTTPRoute field on a GRPCRoute',
    { rules: [{ backendRefs: [backend], timeouts: { request: '1s' } }] },
    'GRPCRoute',
    'spec.rules[0]: unknown field "timeouts"',
  ],
  [
    'two header matches of one name (a map list)',
    {
      rules: [
        {
          matches: [
            {
              headers: [
                { name: 'x', value: '1' },
                { name: 'x', value: '2' },
              ],
            },
          ],
        },
      ],
    },
    'HTTPRoute',
    'spec.rules[0].matches[0].headers[1]: Duplicate value: {"name":"x"}',
  ],
  [
    'a header set twice',
    {
      rules: [
        {
          filters: [
            {
              type: 'RequestHeaderModifier',
              requestHeaderModifier: {
                set: [
                  { name: 'a', value: '1' },
                  { name: 'a', value: '2' },
                ],
              },
            },
          ],
          backendRefs: [backend],
        },
      ],
    },
    'HTTPRoute',
    'spec.rules[0].filters[0].requestHeaderModifier.set[1]: Duplicate value: {"name":"a"}',
  ],
  [
    'a retry code twice (a set list)',
    { rules: [{ backendRefs: [backend], retry: { codes: [503, 503] } }] },
    'HTTPRoute',
    'spec.rules[0].retry.codes[1]: Duplicate value: 503',
  ],
  [
    'a gRPC header match twice',
    {
      rules: [
        {
          matches: [
            {
              headers: [
                { name: 'x', value: '1' },
                { name: 'x', value: '1' },
              ],
            },
          ],
        },
      ],
    },
    'GRPCRoute',
    'spec.rules[0].matches[0].headers[1]: Duplicate value',
  ],
  [
    'a URLRewrite on a GRPCRoute',
    { rules: [{ filters: [{ type: 'URLRewrite', urlRewrite: {} }] }] },
    'GRPCRoute',
    'spec.rules[0].filters[0]: unknown field "urlRewrite"',
  ],
  [
    'a filter type the enum lacks',
    { rules: [{ filters: [{ type: 'Compress' }] }] },
    'HTTPRoute',
    'spec.rules[0].filters[0].type: Unsupported value',
  ],
];

/** [what, spec, kind, the problem's start]: valid for the API server, not something shoal can carry out. */
export const UNSUPPORTED: Array<[string, Record<string, unknown>, GatewayRoute['kind'], string]> = [
  [
    'ExtensionRef',
    { rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'F', name: 'f' } }], backendRefs: [backend] }] },
    'HTTPRoute',
    'spec.rules[0].filters[0].type: ExtensionRef filters are not supported by shoal',
  ],
  [
    'CORS',
    { rules: [{ filters: [{ type: 'CORS', cors: { allowOrigins: ['https://a.example'] } }], backendRefs: [backend] }] },
    'HTTPRoute',
    'spec.rules[0].filters[0].type: CORS filters are not supported by shoal',
  ],
  [
    'ExternalAuth',
    {
      rules: [
        { filters: [{ type: 'ExternalAuth', externalAuth: { protocol: 'HTTP', http: {}, backendRef: backend } }], backendRefs: [backend] },
      ],
    },
    'HTTPRoute',
    'spec.rules[0].filters[0].type: ExternalAuth filters are not supported by shoal',
  ],
  [
    'a rewrite on a backendRef',
    { rules: [{ backendRefs: [{ ...backend, filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'a' } }] }] }] },
    'HTTPRoute',
    'spec.rules[0].backendRefs[0].filters[0].type: URLRewrite filters on a backendRef are not supported by shoal',
  ],
  [
    'session persistence',
    { rules: [{ backendRefs: [backend], sessionPersistence: { type: 'Cookie', sessionName: 's' } }] },
    'HTTPRoute',
    'spec.rules[0].sessionPersistence: session persistence is not supported by shoal',
  ],
  [
    'a path regex ECMAScript cannot compile',
    { rules: [{ matches: [{ path: { type: 'RegularExpression', value: '/a(' } }], backendRefs: [backend] }] },
    'HTTPRoute',
    'spec.rules[0].matches[0].path.value: regular expression "/a(" does not compile',
  ],
  [
    'an RE2-only header regex',
    { rules: [{ matches: [{ headers: [{ name: 'x', type: 'RegularExpression', value: '(?P<n>a)' }] }], backendRefs: [backend] }] },
    'HTTPRoute',
    'spec.rules[0].matches[0].headers[0].value: regular expression',
  ],
  [
    'a query regex',
    { rules: [{ matches: [{ queryParams: [{ name: 'q', type: 'RegularExpression', value: '[' }] }], backendRefs: [backend] }] },
    'HTTPRoute',
    'spec.rules[0].matches[0].queryParams[0].value: regular expression',
  ],
  [
    'a gRPC service regex',
    { rules: [{ matches: [{ method: { type: 'RegularExpression', service: '(' } }], backendRefs: [backend] }] },
    'GRPCRoute',
    'spec.rules[0].matches[0].method.service: regular expression',
  ],
  [
    'a gRPC ExtensionRef',
    { rules: [{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'F', name: 'f' } }], backendRefs: [backend] }] },
    'GRPCRoute',
    'spec.rules[0].filters[0].type: ExtensionRef filters are not supported by shoal',
  ],
];

/** [what, spec, kind]: objects the API server and shoal accept. */
export const GOOD: Array<[string, Record<string, unknown>, GatewayRoute['kind']]> = [
  ['the smallest', { parentRefs: [parent], rules: [{ backendRefs: [backend] }] }, 'HTTPRoute'],
  [
    'a parent by port name',
    {
      parentRefs: [
        { ...parent, sectionName: 'http' },
        { ...parent, sectionName: 'admin' },
      ],
      rules: [{ backendRefs: [backend] }],
    },
    'HTTPRoute',
  ],
  [
    'every field shoal supports',
    {
      parentRefs: [
        { ...parent, port: 8080 },
        { ...parent, port: 9090 },
      ],
      rules: [
        {
          name: 'main',
          matches: [
            {
              path: { type: 'Exact', value: '/a' },
              method: 'GET',
              headers: [{ name: 'x', type: 'RegularExpression', value: '^v[0-9]+$' }],
              queryParams: [{ name: 'q', value: '1' }],
            },
          ],
          filters: [
            {
              type: 'RequestHeaderModifier',
              requestHeaderModifier: { set: [{ name: 'a', value: 'b' }], add: [{ name: 'c', value: 'd' }], remove: ['e'] },
            },
            { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'a', value: 'b' }] } },
            {
              type: 'RequestMirror',
              requestMirror: { backendRef: { name: 'shadow', port: 80 }, fraction: { numerator: 1, denominator: 8 } },
            },
            { type: 'URLRewrite', urlRewrite: { hostname: 'x.example', path: { type: 'ReplaceFullPath', replaceFullPath: '/b' } } },
          ],
          backendRefs: [
            { ...backend, weight: 90 },
            {
              name: 'api-v2',
              port: 8080,
              weight: 10,
              filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'v', value: '2' }] } }],
            },
          ],
          timeouts: { request: '10s', backendRequest: '2s' },
          retry: { codes: [503], attempts: 2, backoff: '100ms' },
        },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
          filters: [
            {
              type: 'RequestRedirect',
              requestRedirect: {
                scheme: 'https',
                hostname: 'new.example',
                port: 8443,
                path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' },
                statusCode: 308,
              },
            },
          ],
        },
      ],
    },
    'HTTPRoute',
  ],
  [
    'a GRPCRoute',
    {
      parentRefs: [parent],
      rules: [
        {
          matches: [
            { method: { service: 'shop.Cart', method: 'Add' }, headers: [{ name: 'x', value: 'y' }] },
            { method: { type: 'RegularExpression', service: 'shop\\..*' } },
          ],
          backendRefs: [backend],
        },
      ],
    },
    'GRPCRoute',
  ],
];

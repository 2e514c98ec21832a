// The Gateway API mesh conformance cases (sigs.k8s.io/gateway-api/conformance, tests/mesh/*.go at the
// release gateway/go.mod pins), transcribed case by case: the request each sends from the echo-v1 pod
// (or the consumer namespace's), and what compareRequest (utils/echo/pod.go) checks of the answer.
// Field names follow the Go structs (utils/http ExpectedResponse, Request, ExpectedRequest, Response,
// roundtripper.RedirectRequest). The manifests are read from the module at test time, never copied.
//
// The official mesh runner's compareRequest checks the status code, the request headers the backend saw
// (ExpectedRequest.Headers and AbsentHeaders), the response headers (Response.Headers, AbsentHeaders) and
// the answering pod's name prefix (Backend). It does NOT check ExpectedRequest.Path nor RedirectRequest
// (the Location of a redirect): they are transcribed here all the same and reported beside the verdict
// as "beyond the official checks", without changing it.

export type Caller = 'mesh' | 'consumer';

export interface Request {
  /** "echo" when empty (makeRequest's default); may carry a port ("echo-v1:8080"); POD_IP(echo-v2) is the pod's address. */
  Host?: string;
  Method?: string;
  Path?: string;
  Headers?: Record<string, string>;
  UnfollowRedirect?: boolean;
  Protocol?: 'grpc';
}

export interface ExpectedRequest {
  Path?: string;
  Headers?: Record<string, string>;
  AbsentHeaders?: string[];
}

export interface RedirectRequest {
  Scheme?: string;
  Host?: string;
  Port?: string;
  Path?: string;
}

export interface Response {
  StatusCode?: number;
  Headers?: Record<string, string>;
  AbsentHeaders?: string[];
}

export interface ExpectedResponse {
  TestCaseName?: string;
  Request: Request;
  ExpectedRequest?: ExpectedRequest;
  RedirectRequest?: RedirectRequest;
  Response?: Response;
  Backend?: string;
  Namespace?: string;
}

export interface Step {
  /** Whose pod sends the request: the echo-v1 pod of gateway-conformance-mesh, or of gateway-conformance-mesh-consumer. */
  caller: Caller;
  exp: ExpectedResponse;
}

export interface ConformanceCase {
  ShortName: string;
  /** The Go file under tests/mesh/ the case comes from. */
  goFile: string;
  Description: string;
  Features: string[];
  /** Paths inside the conformance module, applied as they are. */
  Manifests: string[];
  /** 'responses': every step must converge (3 consecutive successes within 30 s). 'weights': the step converges, then 500-request batches must match the weights (utils/weight). */
  kind: 'responses' | 'weights';
  steps: Step[];
  /** kind 'weights': backend -> share. */
  weights?: Record<string, number>;
}

export const MESH_NS = 'gateway-conformance-mesh';
export const CONSUMER_NS = 'gateway-conformance-mesh-consumer';

const mesh = (exp: ExpectedResponse): Step => ({ caller: 'mesh', exp });

/**
 * Cases that cannot apply to shoal's capture model, with the reason: ONE place. shoal captures nothing
 * (no iptables): an app reaches the mesh by the names the sidecar's DNS answers with a dependency's own
 * loopback address; traffic to a ClusterIP or a pod IP goes where it is addressed, past the sidecar.
 * Every case at this release calls Services by name (MeshFrontend's pod-IP step expects the route NOT to
 * apply, which holds without a sidecar on the path), so none is listed.
 */
export const NOT_APPLICABLE: Record<string, string> = {};

export const CASES: ConformanceCase[] = [
  {
    ShortName: 'MeshBasic',
    goFile: 'mesh-basic.go',
    Description: 'A mesh client can communicate with a mesh server. This tests basic reachability with no configuration applied.',
    Features: ['Mesh'],
    Manifests: [],
    kind: 'responses',
    steps: [mesh({ Request: { Host: 'echo', Method: 'GET' }, Response: { StatusCode: 200 } })],
  },
  {
    ShortName: 'MeshConsumerRoute',
    goFile: 'mesh-consumer-route.go',
    Description: "An HTTPRoute in a namespace other than its parentRef's namespace only affects requests from the route's namespace",
    Features: ['Mesh', 'MeshConsumerRoute', 'HTTPRoute', 'HTTPRouteResponseHeaderModification'],
    Manifests: ['tests/mesh/mesh-consumer-route.yaml'],
    kind: 'responses',
    steps: [
      {
        caller: 'consumer',
        exp: {
          TestCaseName: "request from consumer route's namespace modified by HTTPRoute",
          Request: { Host: 'echo-v1.gateway-conformance-mesh', Method: 'GET', Path: '/' },
          Response: { StatusCode: 200, Headers: { 'X-Header-Set': 'set' } },
          Backend: 'echo-v1',
        },
      },
      mesh({
        TestCaseName: "request not from consumer route's namespace not modified by HTTPRoute",
        Request: { Host: 'echo-v1.gateway-conformance-mesh', Method: 'GET', Path: '/' },
        Response: { StatusCode: 200, AbsentHeaders: ['X-Header-Set'] },
        Backend: 'echo-v1',
      }),
    ],
  },
  {
    ShortName: 'MeshFrontend',
    goFile: 'mesh-frontend.go',
    Description: 'Mesh rules should only apply to the associated frontend',
    Features: ['Mesh', 'HTTPRoute', 'HTTPRouteResponseHeaderModification'],
    Manifests: ['tests/mesh/mesh-frontend.yaml'],
    kind: 'responses',
    steps: [
      mesh({
        TestCaseName: 'Send to service',
        Request: { Host: 'echo-v2', Method: 'GET' },
        Response: { StatusCode: 200, Headers: { 'X-Header-Set': 'set' } },
        Backend: 'echo-v2',
      }),
      // Host: http.Ipv6SafeHost(v2.Address) + ":8080", v2 = the echo-v2 pod (ConnectToApp MeshAppEchoV2).
      mesh({
        TestCaseName: 'Send to pod IP',
        Request: { Host: 'POD_IP(echo-v2):8080', Method: 'GET' },
        Response: { StatusCode: 200, AbsentHeaders: ['X-Header-Set'] },
        Backend: 'echo-v2',
      }),
    ],
  },
  {
    ShortName: 'MeshFrontendHostname',
    goFile: 'mesh-frontend-hostname.go',
    Description: 'Mesh parentRef matches Service IP (not Host)',
    Features: ['Mesh', 'MeshClusterIPMatching', 'HTTPRoute', 'HTTPRouteResponseHeaderModification'],
    Manifests: ['tests/mesh/mesh-frontend.yaml'],
    kind: 'responses',
    steps: [
      mesh({
        TestCaseName: 'Send to service with wrong hostname',
        Request: { Host: 'echo-v2', Headers: { Host: 'echo-v1' }, Method: 'GET' },
        Response: { StatusCode: 200, Headers: { 'X-Header-Set': 'set' } },
        Backend: 'echo-v2',
      }),
      mesh({
        TestCaseName: 'Send to other service with matching hostname',
        Request: { Host: 'echo-v1', Headers: { Host: 'echo-v2' }, Method: 'GET' },
        Response: { StatusCode: 200, AbsentHeaders: ['X-Header-Set'] },
        Backend: 'echo-v1',
      }),
    ],
  },
  {
    ShortName: 'MeshGRPCRouteWeight',
    goFile: 'grpcroute-weight.go',
    Description: 'A GRPCRoute with weighted backends in mesh mode',
    Features: ['Mesh', 'GRPCRoute'],
    Manifests: ['tests/mesh/grpcroute-weight.yaml'],
    kind: 'weights',
    steps: [mesh({ Request: { Protocol: 'grpc', Path: '', Host: 'echo:7070' }, Response: { StatusCode: 200 }, Namespace: MESH_NS })],
    weights: { 'echo-v1': 0.7, 'echo-v2': 0.3 },
  },
  ...(['303', '307', '308'] as const).map((code): ConformanceCase => {
    const path = { 303: '/redirect', 307: '/temporary', 308: '/permanent' }[code];
    return {
      ShortName: `MeshHTTPRoute${code}Redirect`,
      goFile: `httproute-${code}-redirect.go`,
      Description: `An HTTPRoute with statusCode ${code} redirect filter`,
      Features: ['Mesh', 'HTTPRoute', `HTTPRoute${code}RedirectStatusCode`],
      Manifests: [`tests/mesh/httproute-${code}-redirect.yaml`],
      kind: 'responses',
      steps: [
        mesh({
          Request: { Path: path, UnfollowRedirect: true },
          Response: { StatusCode: Number(code) },
          RedirectRequest: { Path: path },
          Namespace: MESH_NS,
        }),
      ],
    };
  }),
  {
    ShortName: 'MeshHTTPRouteMatching',
    goFile: 'httproute-matching.go',
    Description: 'A single HTTPRoute with path and header matching for different backends',
    Features: ['Mesh', 'HTTPRoute'],
    Manifests: ['tests/mesh/httproute-matching.yaml'],
    kind: 'responses',
    steps: (
      [
        [{ Path: '/' }, 'echo-v1'],
        [{ Path: '/example' }, 'echo-v1'],
        [{ Path: '/', Headers: { Version: 'one' } }, 'echo-v1'],
        [{ Path: '/v2' }, 'echo-v2'],
        [{ Path: '/v2/example' }, 'echo-v2'],
        [{ Path: '/', Headers: { Version: 'two' } }, 'echo-v2'],
        [{ Path: '/v2/' }, 'echo-v2'],
        [{ Path: '/v2example' }, 'echo-v1'],
        [{ Path: '/foo/v2/example' }, 'echo-v1'],
      ] as Array<[Request, string]>
    ).map(([Request, Backend]) => mesh({ Request, Backend, Namespace: MESH_NS })),
  },
  {
    ShortName: 'MeshHTTPRouteNamedRule',
    goFile: 'httproute-named-rule.go',
    Description: 'An HTTPRoute with a named HTTPRouteRule',
    Features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteNamedRouteRule'],
    Manifests: ['tests/mesh/httproute-named-rule.yaml'],
    kind: 'responses',
    steps: [
      mesh({ Request: { Path: '/named' }, ExpectedRequest: { Path: '/named' }, Backend: 'echo-v1', Namespace: MESH_NS }),
      // As in the Go file: ExpectedRequest.Path says /named for the /unnamed request (not checked by the mesh runner).
      mesh({ Request: { Path: '/unnamed' }, ExpectedRequest: { Path: '/named' }, Backend: 'echo-v2', Namespace: MESH_NS }),
    ],
  },
  {
    ShortName: 'MeshHTTPRouteQueryParamMatching',
    goFile: 'httproute-query-param-matching.go',
    Description: 'A single HTTPRoute with query param matching for different backends',
    Features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteQueryParamMatching'],
    Manifests: ['tests/mesh/httproute-query-param-matching.yaml'],
    kind: 'responses',
    steps: (
      [
        [{ Path: '/?animal=whale' }, 'echo-v1'],
        [{ Path: '/?animal=dolphin' }, 'echo-v2'],
        [{ Path: '/?animal=whale&otherparam=irrelevant' }, 'echo-v1'],
        [{ Path: '/?animal=dolphin&color=yellow' }, 'echo-v2'],
        [{ Path: '/?color=blue' }, 404],
        [{ Path: '/?animal=dog' }, 404],
        [{ Path: '/?animal=whaledolphin' }, 404],
        [{ Path: '/' }, 404],
        [{ Path: '/path1?animal=whale' }, 'echo-v1'],
        [{ Headers: { version: 'one' }, Path: '/?animal=whale' }, 'echo-v2'],
        [{ Path: '/path3?animal=shark' }, 'echo-v1'],
        [{ Headers: { version: 'three' }, Path: '/path4?animal=kraken' }, 'echo-v1'],
        [{ Path: '/?animal=shark' }, 404],
        [{ Path: '/path4?animal=kraken' }, 404],
        [{ Path: '/path5?animal=hydra' }, 'echo-v1'],
      ] as Array<[Request, string | number]>
    ).map(([Request, to]) =>
      mesh(typeof to === 'string' ? { Request, Backend: to, Namespace: MESH_NS } : { Request, Response: { StatusCode: to } }),
    ),
  },
  {
    ShortName: 'MeshHTTPRouteRedirectHostAndStatus',
    goFile: 'httproute-redirect-host-and-status.go',
    Description: 'An HTTPRoute with hostname and statusCode redirect filters',
    Features: ['Mesh', 'HTTPRoute'],
    Manifests: ['tests/mesh/httproute-redirect-host-and-status.yaml'],
    kind: 'responses',
    steps: [
      mesh({
        Request: { Host: 'echo', Path: '/hostname-redirect', UnfollowRedirect: true },
        Response: { StatusCode: 302 },
        RedirectRequest: { Host: 'example.org' },
        Namespace: MESH_NS,
      }),
      mesh({
        Request: { Host: 'echo', Path: '/host-and-status', UnfollowRedirect: true },
        Response: { StatusCode: 301 },
        RedirectRequest: { Host: 'example.org' },
        Namespace: MESH_NS,
      }),
    ],
  },
  {
    ShortName: 'MeshHTTPRouteRedirectPath',
    goFile: 'httproute-redirect-path.go',
    Description: 'An HTTPRoute with scheme redirect filter',
    Features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteRedirectPath'],
    Manifests: ['tests/mesh/httproute-redirect-path.yaml'],
    kind: 'responses',
    steps: (
      [
        ['/original-prefix/lemon', 302, { Path: '/replacement-prefix/lemon' }],
        ['/full/path/original', 302, { Path: '/full-path-replacement' }],
        ['/path-and-host', 302, { Host: 'example.org', Path: '/replacement-prefix' }],
        ['/path-and-status', 301, { Path: '/replacement-prefix' }],
        ['/full-path-and-host', 302, { Host: 'example.org', Path: '/replacement-full' }],
        ['/full-path-and-status', 301, { Path: '/replacement-full' }],
      ] as Array<[string, number, RedirectRequest]>
    ).map(([Path, StatusCode, RedirectRequest]) =>
      mesh({
        Request: { Host: 'echo', Path, UnfollowRedirect: true },
        Response: { StatusCode },
        RedirectRequest,
        Namespace: MESH_NS,
      }),
    ),
  },
  {
    ShortName: 'MeshHTTPRouteRedirectPort',
    goFile: 'httproute-redirect-port.go',
    Description: 'An HTTPRoute with a port redirect filter',
    Features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteRedirectPort'],
    Manifests: ['tests/mesh/httproute-redirect-port.yaml'],
    kind: 'responses',
    steps: (
      [
        ['/port', 302, { Port: '8083' }],
        ['/port-and-host', 302, { Host: 'example.org', Port: '8083' }],
        ['/port-and-status', 301, { Port: '8083' }],
        ['/port-and-host-and-status', 302, { Port: '8083', Host: 'example.org' }],
      ] as Array<[string, number, RedirectRequest]>
    ).map(([Path, StatusCode, RedirectRequest]) =>
      mesh({
        Request: { Host: 'echo', Path, UnfollowRedirect: true },
        Response: { StatusCode },
        RedirectRequest,
        Namespace: MESH_NS,
      }),
    ),
  },
  {
    ShortName: 'MeshHTTPRouteSchemeRedirect',
    goFile: 'httproute-redirect-scheme.go',
    Description: 'An HTTPRoute with a scheme redirect filter',
    Features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteSchemeRedirect'],
    Manifests: ['tests/mesh/httproute-redirect-scheme.yaml'],
    kind: 'responses',
    steps: (
      [
        ['/scheme', 302, { Scheme: 'https' }],
        ['/scheme-and-host', 302, { Host: 'example.org', Scheme: 'https' }],
        ['/scheme-and-status', 301, { Scheme: 'https' }],
        ['/scheme-and-host-and-status', 302, { Scheme: 'https', Host: 'example.org' }],
      ] as Array<[string, number, RedirectRequest]>
    ).map(([Path, StatusCode, RedirectRequest]) =>
      mesh({
        Request: { Host: 'echo', Path, UnfollowRedirect: true },
        Response: { StatusCode },
        RedirectRequest,
        Namespace: MESH_NS,
      }),
    ),
  },
  // httproute-request-header-modifier.go holds two cases: the route-level filters and the same steps
  // with the filters on the backendRef (httproute-request-header-modifier-backend.yaml).
  ...(
    [
      [
        'MeshHTTPRouteRequestHeaderModifier',
        'An HTTPRoute has request header modifier filters applied correctly',
        ['Mesh', 'HTTPRoute'],
        'tests/mesh/httproute-request-header-modifier.yaml',
      ],
      [
        'MeshHTTPRouteBackendRequestHeaderModifier',
        'An HTTPRoute backend has request header modifier filters applied correctly',
        ['Mesh', 'HTTPRoute', 'MeshHTTPRouteBackendRequestHeaderModification'],
        'tests/mesh/httproute-request-header-modifier-backend.yaml',
      ],
    ] as Array<[string, string, string[], string]>
  ).map(([ShortName, Description, Features, manifest]): ConformanceCase => ({
    ShortName,
    goFile: 'httproute-request-header-modifier.go',
    Description,
    Features,
    Manifests: [manifest],
    kind: 'responses',
    steps: [
      mesh({
        Request: { Path: '/set', Headers: { 'Some-Other-Header': 'val' } },
        ExpectedRequest: { Path: '/set', Headers: { 'Some-Other-Header': 'val', 'X-Header-Set': 'set-overwrites-values' } },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({
        Request: { Path: '/set', Headers: { 'Some-Other-Header': 'val', 'X-Header-Set': 'some-other-value' } },
        ExpectedRequest: { Path: '/set', Headers: { 'Some-Other-Header': 'val', 'X-Header-Set': 'set-overwrites-values' } },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({
        Request: { Path: '/add', Headers: { 'Some-Other-Header': 'val' } },
        ExpectedRequest: { Path: '/add', Headers: { 'Some-Other-Header': 'val', 'X-Header-Add': 'add-appends-values' } },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({
        Request: { Path: '/add', Headers: { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value' } },
        ExpectedRequest: { Path: '/add', Headers: { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value,add-appends-values' } },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({
        Request: { Path: '/remove', Headers: { 'X-Header-Remove': 'val' } },
        ExpectedRequest: { Path: '/remove', AbsentHeaders: ['X-Header-Remove'] },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({
        Request: {
          Path: '/multiple',
          Headers: {
            'X-Header-Set-2': 'set-val-2',
            'X-Header-Add-2': 'add-val-2',
            'X-Header-Remove-2': 'remove-val-2',
            'Another-Header': 'another-header-val',
          },
        },
        ExpectedRequest: {
          Path: '/multiple',
          Headers: {
            'X-Header-Set-1': 'header-set-1',
            'X-Header-Set-2': 'header-set-2',
            'X-Header-Add-1': 'header-add-1',
            'X-Header-Add-2': 'add-val-2,header-add-2',
            'X-Header-Add-3': 'header-add-3',
            'Another-Header': 'another-header-val',
          },
          AbsentHeaders: ['X-Header-Remove-1', 'X-Header-Remove-2'],
        },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({
        Request: {
          Path: '/case-insensitivity',
          Headers: {
            'x-header-set': 'original-val-set',
            'x-header-add': 'original-val-add',
            'x-header-remove': 'original-val-remove',
            'Another-Header': 'another-header-val',
          },
        },
        ExpectedRequest: {
          Path: '/case-insensitivity',
          Headers: { 'X-Header-Set': 'header-set', 'X-Header-Add': 'original-val-add,header-add', 'Another-Header': 'another-header-val' },
          AbsentHeaders: ['x-header-remove', 'X-Header-Remove'],
        },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
    ],
  })),
  {
    ShortName: 'MeshHTTPRouteRewritePath',
    goFile: 'httproute-rewrite-path.go',
    Description: 'An HTTPRoute with path rewrite filter',
    Features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteRewritePath'],
    Manifests: ['tests/mesh/httproute-rewrite-path.yaml'],
    kind: 'responses',
    steps: [
      mesh({
        Request: { Path: '/prefix/one/two', Host: 'echo' },
        ExpectedRequest: { Path: '/one/two' },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({
        Request: { Path: '/strip-prefix/three', Host: 'echo' },
        ExpectedRequest: { Path: '/three' },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({ Request: { Path: '/strip-prefix', Host: 'echo' }, ExpectedRequest: { Path: '/' }, Backend: 'echo-v1', Namespace: MESH_NS }),
      mesh({ Request: { Path: '/full/one/two', Host: 'echo' }, ExpectedRequest: { Path: '/one' }, Backend: 'echo-v1', Namespace: MESH_NS }),
      mesh({
        Request: {
          Host: 'echo',
          Path: '/full/rewrite-path-and-modify-headers/test',
          Headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1', 'X-Header-Set': 'set-val' },
        },
        ExpectedRequest: {
          Path: '/test',
          Headers: {
            'X-Header-Add': 'header-val-1',
            'X-Header-Add-Append': 'append-val-1,header-val-2',
            'X-Header-Set': 'set-overwrites-values',
          },
          AbsentHeaders: ['X-Header-Remove'],
        },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
      mesh({
        Request: {
          Host: 'echo',
          Path: '/prefix/rewrite-path-and-modify-headers/one',
          Headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1', 'X-Header-Set': 'set-val' },
        },
        ExpectedRequest: {
          Path: '/prefix/one',
          Headers: {
            'X-Header-Add': 'header-val-1',
            'X-Header-Add-Append': 'append-val-1,header-val-2',
            'X-Header-Set': 'set-overwrites-values',
          },
          AbsentHeaders: ['X-Header-Remove'],
        },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
    ],
  },
  {
    ShortName: 'MeshHTTPRouteSimpleSameNamespace',
    goFile: 'httproute-simple-same-namespace.go',
    Description: 'A single HTTPRoute in the gateway-conformance-mesh namespace attaches to a Service in the same namespace',
    Features: ['Mesh', 'HTTPRoute'],
    Manifests: ['tests/mesh/httproute-simple-same-namespace.yaml'],
    kind: 'responses',
    steps: [
      mesh({
        TestCaseName: 'Simple HTTP request should reach infra-backend',
        Request: { Path: '/', Host: 'echo' },
        Response: { StatusCode: 200 },
        Backend: 'echo-v1',
        Namespace: MESH_NS,
      }),
    ],
  },
  {
    ShortName: 'MeshHTTPRouteWeight',
    goFile: 'httproute-weight.go',
    Description: 'An HTTPRoute with weighted backends',
    Features: ['Mesh', 'HTTPRoute'],
    Manifests: ['tests/mesh/httproute-weight.yaml'],
    kind: 'weights',
    steps: [mesh({ Request: { Path: '/', Host: 'echo' }, Response: { StatusCode: 200 }, Namespace: MESH_NS })],
    weights: { 'echo-v1': 0.7, 'echo-v2': 0.3 },
  },
  {
    ShortName: 'MeshPorts',
    goFile: 'mesh-ports.go',
    Description: "A mesh route can optionally configure 'port' in parentRef",
    Features: ['Mesh', 'HTTPRoute', 'HTTPRouteParentRefPort', 'HTTPRouteResponseHeaderModification'],
    Manifests: ['tests/mesh/mesh-ports.yaml'],
    kind: 'responses',
    steps: [
      mesh({
        TestCaseName: 'Explicit port set, send to that port',
        Request: { Host: 'echo-v1', Method: 'GET' },
        Response: { StatusCode: 200, Headers: { 'X-Header-Set': 'v1' } },
        Backend: 'echo-v1',
      }),
      mesh({
        TestCaseName: 'Explicit port, send to an excluded port',
        Request: { Host: 'echo-v1:8080', Method: 'GET' },
        Response: { StatusCode: 200, AbsentHeaders: ['X-Header-Set'] },
        Backend: 'echo-v1',
      }),
      mesh({
        TestCaseName: 'No port set',
        Request: { Host: 'echo-v2', Method: 'GET' },
        Response: { StatusCode: 200, Headers: { 'X-Header-Set': 'v2' } },
        Backend: 'echo-v2',
      }),
      mesh({
        TestCaseName: 'No port set',
        Request: { Host: 'echo-v2:8080', Method: 'GET' },
        Response: { StatusCode: 200, Headers: { 'X-Header-Set': 'v2' } },
        Backend: 'echo-v2',
      }),
    ],
  },
  {
    ShortName: 'MeshTrafficSplit',
    goFile: 'mesh-split.go',
    Description: 'A mesh client can send traffic to a Service which is split between two versions',
    Features: ['Mesh', 'HTTPRoute'],
    Manifests: ['tests/mesh/mesh-split.yaml'],
    kind: 'responses',
    steps: [
      mesh({ Request: { Host: 'echo', Method: 'GET', Path: '/v1' }, Response: { StatusCode: 200 }, Backend: 'echo-v1' }),
      mesh({ Request: { Host: 'echo', Method: 'GET', Path: '/v2' }, Response: { StatusCode: 200 }, Backend: 'echo-v2' }),
    ],
  },
];

/** utils/http GetTestCaseName: the given name, or one made of the request and what it expects. */
export function testCaseName(exp: ExpectedResponse, i: number): string {
  if (exp.TestCaseName) return exp.TestCaseName;
  const headerStr = exp.Request.Headers ? ' with headers' : '';
  const reqStr = `${i} request to '${exp.Request.Host ?? ''}${exp.Request.Path ?? ''}'${headerStr}`;
  if (exp.Backend) return `${reqStr} should go to ${exp.Backend}`;
  // Named before makeRequest fills Response.StatusCodes in: no case sets it, so Go prints [].
  return `${reqStr} should receive one of []`;
}

/** makeRequest's defaults for what the answer may be: StatusCode, else 200. */
export function statusCodes(exp: ExpectedResponse): number[] {
  return exp.Response?.StatusCode ? [exp.Response.StatusCode] : [200];
}

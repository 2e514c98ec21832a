// Package pin keeps sigs.k8s.io/gateway-api in go.mod: nothing is built from it, but scripts/gateway.ts
// reads its CRDs (config/crd/) from the module at the version pinned here.
package pin

import _ "sigs.k8s.io/gateway-api/pkg/consts"

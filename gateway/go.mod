// The Gateway API at one release: its CRDs (config/crd/standard and config/crd/experimental of
// sigs.k8s.io/gateway-api) for the test API server and the chart, and the conformance module's mesh
// cases and echo server (sigs.k8s.io/gateway-api/conformance, echo-basic built by scripts/gateway.ts).
// To move to another release, change both versions here, then `go mod tidy`.
module shoal/gateway

go 1.26.0

tool sigs.k8s.io/gateway-api/conformance/echo-basic

require sigs.k8s.io/gateway-api v1.6.3

require (
	golang.org/x/net v0.55.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
	golang.org/x/text v0.37.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260427160629-7cedc36a6bc4 // indirect
	google.golang.org/grpc v1.81.1 // indirect
	google.golang.org/protobuf v1.36.12-0.20260120151049-f2248ac996af // indirect
	sigs.k8s.io/gateway-api/conformance v1.6.3 // indirect
)

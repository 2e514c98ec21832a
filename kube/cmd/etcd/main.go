// etcd's own program: the same entry point as go.etcd.io/etcd/v3's main, built from the server module
// so its version is pinned in this go.mod beside the Kubernetes release it serves.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

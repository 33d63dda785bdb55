package dma_test

import (
	"fmt"

	"github.com/ycq-dev/ycq/dma"
)

// A memfd region; its descriptor is what another process would receive and
// map with dma.Map.
func Example() {
	r, err := dma.Memfd("example", 10000, dma.Options{})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	copy(r.Bytes(), "shared")
	fmt.Println(r.Size(), r.FD() >= 0, string(r.Bytes()[:6]))
	// Output: 10000 true shared
}

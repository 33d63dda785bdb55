package devicemodel_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// A server and the Go client over a socketpair: the client reads the
// device's config space and writes a register, as a host driver would.
func ExampleServer_ServeConn() {
	dev, err := newTestDevice() // any devicemodel.Device
	if err != nil {
		panic(err)
	}
	defer dev.Close()
	hostEnd, deviceEnd, err := fdpass.Socketpair()
	if err != nil {
		panic(err)
	}
	srv := devicemodel.NewServer(dev, &devicemodel.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	done := make(chan error)
	go func() { done <- srv.ServeConn(context.Background(), deviceEnd) }()

	c, err := user.NewClient(hostEnd, nil)
	if err != nil {
		panic(err)
	}
	id, _ := vfio.ReadConfig32(c, 0)
	vfio.Write32(c, vfio.BAR0, 0x10, 42)
	v, _ := vfio.Read32(c, vfio.BAR0, 0x10)
	fmt.Printf("vendor %#04x device %#04x, register %d\n", id&0xffff, id>>16, v)
	c.Close()
	fmt.Println("server:", <-done, "- messages:", srv.Stats().Messages[user.CmdRegionRead], "reads")
	// Output:
	// vendor 0x1234 device 0xabcd, register 42
	// server: <nil> - messages: 2 reads
}

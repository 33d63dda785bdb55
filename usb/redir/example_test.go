package redir_test

import (
	"bytes"
	"fmt"

	"github.com/ycq-dev/ycq/usb/redir"
)

// A usb-host's start: read QEMU's hello, answer with its own, switch to
// the negotiated layout and decode what follows.
func Example() {
	var wire bytes.Buffer // stands for the chardev socket
	guest := redir.NewWriter(&wire)
	guestCaps := redir.Caps{}.With(redir.Cap64BitIDs, redir.CapConnectDeviceVersion)
	_ = guest.Send(0, redir.Hello{Version: "qemu usb-redir guest", Caps: guestCaps})
	guest.SetLayout(redir.Negotiate(guestCaps, redir.Caps{}.With(redir.Cap64BitIDs)))
	_ = guest.Send(1<<33, redir.GetConfiguration{})

	r := redir.NewReader(&wire, 0)
	p, _ := r.Next()
	hello, _ := redir.DecodeHello(p.Body)
	l := redir.Negotiate(redir.Caps{}.With(redir.Cap64BitIDs), hello.Caps)
	r.SetLayout(l)
	fmt.Printf("%s from %q, 64-bit ids: %v\n", p.Header.Type, hello.Version, l.IDs64)

	p, _ = r.Next()
	body, err := redir.Decode(p.Header.Type, p.Body, l, redir.RoleGuest)
	fmt.Printf("%s id %#x: %T %v\n", p.Header.Type, p.Header.ID, body, err)
	// Output:
	// hello from "qemu usb-redir guest", 64-bit ids: true
	// get_configuration id 0x200000000: redir.GetConfiguration <nil>
}

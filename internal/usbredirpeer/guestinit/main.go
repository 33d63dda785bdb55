//go:build linux

// Command guestinit is the /init of the usbredir interop guest
// (tests/usbredir_interop_test.go). It needs no USB controller from QEMU:
// the device is the guest kernel's own. It loads dummy_hcd (a software
// USB host controller wired to a software device controller) and the
// loopback gadget function, builds a gadget in configfs and binds it, so
// the gadget enumerates on dummy_hcd as a real USB device; then it starts
// usbredir's usbredirect, which exports that device over TCP on the
// loopback interface, and connects to it as the usb-guest with
// internal/usbredirpeer: hello, interface_info, ep_info and device_connect;
// standard descriptors through control packets; set_configuration,
// get_configuration and the alternate setting requests; bulk data written
// to the loopback function and read back from it, one transfer at a time
// and many in flight; reset; and a bulk IN that never completes cancelled
// with cancel_data_packet.
//
// It ends with "YCQ-RESULT {json}" (the result type below) and powers off.
// usbredirect's path comes from the kernel parameter ycq.usbredirect,
// default /usr/bin/usbredirect.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/internal/usbredirpeer"
	"github.com/ycq-dev/ycq/qemu/guest"
	"github.com/ycq-dev/ycq/usb/redir"
)

// The gadget: pid.codes' test vendor and product ids.
const (
	vendorID     = 0x1209
	productID    = 0x0001
	bcdDevice    = 0x0107
	manufacturer = "ycq interop"
	product      = "ycq loopback gadget"
	serial       = "YCQ-LB-0001"
	bulkBuflen   = 128 << 10 // the loopback function's request size: above 64 KiB, so bulk lengths need length_high
	listenAddr   = "127.0.0.1:4000"
	gadgetDir    = "/sys/kernel/config/usb_gadget/ycq"
)

// Generous bounds for a guest under TCG; they turn a hang into an error,
// they measure nothing.
const (
	waitLong  = 2 * time.Minute
	waitReply = 30 * time.Second
)

// result is the YCQ-RESULT line.
type result struct {
	Mode        string   `json:"mode"`
	Modules     int      `json:"modules"`
	PeerVersion string   `json:"peer_version"`
	PeerCaps    []uint32 `json:"peer_caps"`
	Layout      string   `json:"layout"`

	Speed      int      `json:"speed"`
	VendorID   string   `json:"vendor_id"`
	ProductID  string   `json:"product_id"`
	DeviceBCD  string   `json:"device_bcd"`
	Interfaces int      `json:"interfaces"`
	IfClass    int      `json:"if_class"`
	BulkIn     string   `json:"bulk_in"`
	BulkOut    string   `json:"bulk_out"`
	MaxPacket  int      `json:"max_packet"`
	DescVID    string   `json:"desc_vendor_id"`
	DescPID    string   `json:"desc_product_id"`
	ConfigLen  int      `json:"config_len"`
	Strings    []string `json:"strings"`

	SetConfig           int    `json:"set_config_status"`
	SetConfigValue      int    `json:"set_config_value"`
	SetConfig0          int    `json:"set_config0_status"`
	SetConfig0Value     int    `json:"set_config0_value"`
	SetConfigAgain      int    `json:"set_config_again_status"`
	SetConfigAgainValue int    `json:"set_config_again_value"`
	Reannounced         bool   `json:"reannounced"`
	Rounds              int    `json:"rounds"`
	Bytes               int    `json:"bytes"`
	Mismatches          int    `json:"mismatches"`
	CancelStatus        int    `json:"cancel_status"`
	Pipelined           int    `json:"pipelined"`
	GetConfig           int    `json:"get_config"`
	SetAlt              int    `json:"set_alt_status"`
	GetAlt              string `json:"get_alt"`
	AfterResetOK        bool   `json:"after_reset_ok"`
	AfterCancelOK       bool   `json:"after_cancel_ok"`
	UsbredirectExit     string `json:"usbredirect_exit"`
	Error               string `json:"error,omitempty"`
}

func main() {
	guest.Main(func() error {
		var res result
		res.Mode = "usbredir-interop"
		err := run(&res)
		if err != nil {
			res.Error = err.Error()
		}
		b, _ := json.Marshal(res)
		fmt.Printf("YCQ-RESULT %s\n", b)
		return err
	})
}

func param(name, def string) string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return def
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return def
}

func run(res *result) error {
	mods, err := guest.LoadModules(guest.ModuleList)
	res.Modules = len(mods)
	if err != nil {
		return err
	}
	if err := os.MkdirAll("/sys/kernel/config", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("configfs", "/sys/kernel/config", "configfs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount configfs: %w", err)
	}
	if err := os.MkdirAll("/tmp", 0o1777); err != nil {
		return err
	}
	if err := makeGadget(); err != nil {
		return fmt.Errorf("gadget: %w", err)
	}
	if err := waitUSBDevice(vendorID, productID); err != nil {
		return err
	}
	if err := loopbackUp(); err != nil {
		return err
	}

	bin := param("ycq.usbredirect", "/usr/bin/usbredirect")
	cmd := exec.Command(bin, "--device", fmt.Sprintf("%04x:%04x", vendorID, productID), "--as", listenAddr)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp"}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start usbredirect: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	err = session(res, exited)
	// usbredirect exits once its peer closes the connection (session did).
	select {
	case werr := <-exited:
		res.UsbredirectExit = fmt.Sprint(werr)
		if werr == nil {
			res.UsbredirectExit = "ok"
		}
	case <-time.After(waitReply):
		cmd.Process.Kill()
		res.UsbredirectExit = "still running; killed"
		<-exited
	}
	return err
}

// makeGadget builds a gadget with one configuration holding the Loopback
// function and binds it to dummy_hcd's device controller.
func makeGadget() error {
	write := func(rel, v string) error {
		return os.WriteFile(filepath.Join(gadgetDir, rel), []byte(v), 0o644)
	}
	for _, d := range []string{"strings/0x409", "configs/c.1/strings/0x409", "functions/Loopback.0"} {
		if err := os.MkdirAll(filepath.Join(gadgetDir, d), 0o755); err != nil {
			return err
		}
	}
	for _, kv := range [][2]string{
		{"idVendor", fmt.Sprintf("%#04x", vendorID)},
		{"idProduct", fmt.Sprintf("%#04x", productID)},
		{"bcdDevice", fmt.Sprintf("%#04x", bcdDevice)},
		{"bcdUSB", "0x0200"},
		{"strings/0x409/manufacturer", manufacturer},
		{"strings/0x409/product", product},
		{"strings/0x409/serialnumber", serial},
		{"configs/c.1/strings/0x409/configuration", "loopback"},
		{"configs/c.1/MaxPower", "100"},
		{"functions/Loopback.0/bulk_buflen", fmt.Sprint(bulkBuflen)},
	} {
		if err := write(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := os.Symlink(filepath.Join(gadgetDir, "functions/Loopback.0"), filepath.Join(gadgetDir, "configs/c.1/Loopback.0")); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	udcs, err := os.ReadDir("/sys/class/udc")
	if err != nil || len(udcs) == 0 {
		return fmt.Errorf("no device controller in /sys/class/udc (%v)", err)
	}
	return write("UDC", udcs[0].Name())
}

// waitUSBDevice waits until the host side of dummy_hcd has enumerated the
// device.
func waitUSBDevice(vid, pid uint16) error {
	want := fmt.Sprintf("%04x:%04x", vid, pid)
	deadline := time.Now().Add(waitLong)
	for {
		dirs, _ := filepath.Glob("/sys/bus/usb/devices/*/idVendor")
		for _, f := range dirs {
			v, _ := os.ReadFile(f)
			p, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "idProduct"))
			if strings.TrimSpace(string(v))+":"+strings.TrimSpace(string(p)) == want {
				fmt.Printf("usbredir-interop: %s is %s\n", want, filepath.Base(filepath.Dir(f)))
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gadget %s did not enumerate on dummy_hcd", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loopbackUp sets lo up, which gives it 127.0.0.1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// dial connects to usbredirect once it listens.
func dial(exited <-chan error) (*usbredirpeer.Guest, error) {
	deadline := time.Now().Add(waitLong)
	for {
		g, err := usbredirpeer.Dial(listenAddr)
		if err == nil {
			return g, nil
		}
		select {
		case werr := <-exited:
			return nil, fmt.Errorf("usbredirect exited before it listened: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("usbredirect never listened on %s: %w", listenAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func session(res *result, exited <-chan error) error {
	g, err := dial(exited)
	if err != nil {
		return err
	}
	defer g.Close()
	res.PeerVersion = g.Peer().Version
	res.PeerCaps = g.Peer().Caps
	res.Layout = fmt.Sprintf("%+v", g.Layout())

	at, dev, err := g.WaitDevice(0, waitLong)
	if err != nil {
		return err
	}
	res.Speed = int(dev.Connect.Speed)
	res.VendorID = fmt.Sprintf("%04x", dev.Connect.VendorID)
	res.ProductID = fmt.Sprintf("%04x", dev.Connect.ProductID)
	res.DeviceBCD = fmt.Sprintf("%04x", dev.Connect.DeviceVersionBCD)
	res.Interfaces = int(dev.Interfaces.Count)
	if dev.Interfaces.Count > 0 {
		res.IfClass = int(dev.Interfaces.Class[0])
	}
	in, out, err := bulkEndpoints(dev.Endpoints)
	if err != nil {
		return err
	}
	res.BulkIn, res.BulkOut = fmt.Sprintf("%#02x", in), fmt.Sprintf("%#02x", out)
	res.MaxPacket = int(dev.Endpoints.MaxPacketSize[redir.EndpointIndex(in)])

	// Standard descriptors through control packets.
	dd, err := g.GetDescriptor(0x01, 0, 0, 18, waitReply)
	if err != nil {
		return err
	}
	if len(dd) != 18 || dd[1] != 0x01 {
		return fmt.Errorf("device descriptor: % x", dd)
	}
	res.DescVID = fmt.Sprintf("%04x", binary.LittleEndian.Uint16(dd[8:]))
	res.DescPID = fmt.Sprintf("%04x", binary.LittleEndian.Uint16(dd[10:]))
	cd, err := g.GetDescriptor(0x02, 0, 0, 9, waitReply)
	if err != nil {
		return err
	}
	if len(cd) != 9 || cd[1] != 0x02 {
		return fmt.Errorf("configuration descriptor header: % x", cd)
	}
	total := binary.LittleEndian.Uint16(cd[2:])
	full, err := g.GetDescriptor(0x02, 0, 0, total, waitReply)
	if err != nil {
		return err
	}
	res.ConfigLen = len(full)
	for _, idx := range []uint8{dd[14], dd[15], dd[16]} { // iManufacturer, iProduct, iSerialNumber
		sd, err := g.GetDescriptor(0x03, idx, 0x0409, 255, waitReply)
		if err != nil {
			return err
		}
		s, err := usbredirpeer.StringDescriptor(sd)
		if err != nil {
			return err
		}
		res.Strings = append(res.Strings, s)
	}

	// set_configuration: the usb-host answers each with
	// configuration_status. Asking for the active configuration changes
	// nothing; leaving it (configuration 0) and coming back makes the
	// usb-host claim the interface again and announce its endpoints anew.
	setConfig := func(from, v int) (int, redir.ConfigurationStatus, error) {
		if err := g.Send(redir.SetConfiguration{Configuration: uint8(v)}); err != nil {
			return 0, redir.ConfigurationStatus{}, err
		}
		i, b, err := g.WaitEvent(from, waitReply, func(b redir.Body) bool { return b.Type() == redir.TypeConfigurationStatus })
		if err != nil {
			return 0, redir.ConfigurationStatus{}, fmt.Errorf("set_configuration %d: %w", v, err)
		}
		return i, b.(redir.ConfigurationStatus), nil
	}
	i, cs, err := setConfig(at+1, 1)
	if err != nil {
		return err
	}
	res.SetConfig, res.SetConfigValue = int(cs.Status), int(cs.Configuration)
	i, cs, err = setConfig(i+1, 0)
	if err != nil {
		return err
	}
	res.SetConfig0, res.SetConfig0Value = int(cs.Status), int(cs.Configuration)
	j, cs, err := setConfig(i+1, 1)
	if err != nil {
		return err
	}
	res.SetConfigAgain, res.SetConfigAgainValue = int(cs.Status), int(cs.Configuration)
	for _, e := range g.Events()[i+1 : j+1] {
		if ep, ok := e.(redir.EPInfo); ok {
			res.Reannounced = ep.EPType[redir.EndpointIndex(in)] == redir.EPBulk && ep.EPType[redir.EndpointIndex(out)] == redir.EPBulk
		}
	}

	// Bulk data through the loopback function: what goes out on the OUT
	// endpoint comes back on the IN one. The sizes avoid short multiples of
	// the max packet size, which would leave the gadget's OUT request
	// waiting for more.
	sizes := []int{bulkBuflen, 1, 1000, 4095, 333, 100000, 2049, 77, 65537}
	const rounds = 200
	for r := range rounds {
		n := sizes[r%len(sizes)]
		data := pattern(r, n)
		o, err := g.Bulk(redir.BulkPacket{Endpoint: out, Length: uint32(n), Data: data}, waitReply)
		if err != nil {
			return fmt.Errorf("round %d: bulk out: %w", r, err)
		}
		if o.Status != redir.StatusSuccess || o.Length != uint32(n) {
			return fmt.Errorf("round %d: bulk out of %d: status %d, length %d", r, n, o.Status, o.Length)
		}
		back, err := g.Bulk(redir.BulkPacket{Endpoint: in, Length: bulkBuflen}, waitReply)
		if err != nil {
			return fmt.Errorf("round %d: bulk in: %w", r, err)
		}
		if back.Status != redir.StatusSuccess {
			return fmt.Errorf("round %d: bulk in: status %d", r, back.Status)
		}
		if !bytes.Equal(back.Data, data) {
			res.Mismatches++
			fmt.Printf("usbredir-interop: round %d: sent %d bytes (crc %08x), got %d (crc %08x)\n",
				r, n, crc32.ChecksumIEEE(data), len(back.Data), crc32.ChecksumIEEE(back.Data))
		}
		res.Rounds++
		res.Bytes += n
	}

	// Many in flight: transfers submitted back to back, then their
	// replies matched by id (64-bit ids, above 32 bits).
	const depth = 16
	for r := range 4 {
		var sent [][]byte
		var outs, ins []<-chan redir.Body
		for k := range depth {
			data := pattern(1000+r*depth+k, sizes[k%len(sizes)])
			_, ch, err := g.Submit(redir.BulkPacket{Endpoint: out, Length: uint32(len(data)), Data: data})
			if err != nil {
				return err
			}
			sent, outs = append(sent, data), append(outs, ch)
		}
		for k := range depth {
			b, err := usbredirpeer.Await(outs[k], waitReply)
			if err != nil {
				return fmt.Errorf("pipelined out %d: %w", k, err)
			}
			if o := b.(redir.BulkPacket); o.Status != redir.StatusSuccess || int(o.Length) != len(sent[k]) {
				return fmt.Errorf("pipelined out %d: status %d, length %d", k, o.Status, o.Length)
			}
		}
		for range depth {
			_, ch, err := g.Submit(redir.BulkPacket{Endpoint: in, Length: bulkBuflen})
			if err != nil {
				return err
			}
			ins = append(ins, ch)
		}
		for k := range depth {
			b, err := usbredirpeer.Await(ins[k], waitReply)
			if err != nil {
				return fmt.Errorf("pipelined in %d: %w", k, err)
			}
			back := b.(redir.BulkPacket)
			if back.Status != redir.StatusSuccess || !bytes.Equal(back.Data, sent[k]) {
				res.Mismatches++
				fmt.Printf("usbredir-interop: pipelined %d/%d: status %d, sent %d bytes, got %d\n", r, k, back.Status, len(sent[k]), len(back.Data))
			}
			res.Pipelined++
			res.Bytes += len(sent[k])
		}
	}

	// get_configuration and the alternate setting of the interface.
	from := len(g.Events())
	if err := g.Send(redir.GetConfiguration{}); err != nil {
		return err
	}
	_, b, err := g.WaitEvent(from, waitReply, func(b redir.Body) bool { return b.Type() == redir.TypeConfigurationStatus })
	if err != nil {
		return fmt.Errorf("get_configuration: %w", err)
	}
	res.GetConfig = int(b.(redir.ConfigurationStatus).Configuration)
	iface := dev.Interfaces.Number[0]
	from = len(g.Events())
	if err := g.Send(redir.SetAltSetting{Interface: iface, Alt: 0}); err != nil {
		return err
	}
	i, b, err = g.WaitEvent(from, waitReply, func(b redir.Body) bool { return b.Type() == redir.TypeAltSettingStatus })
	if err != nil {
		return fmt.Errorf("set_alt_setting: %w", err)
	}
	res.SetAlt = int(b.(redir.AltSettingStatus).Status)
	if err := g.Send(redir.GetAltSetting{Interface: iface}); err != nil {
		return err
	}
	_, b, err = g.WaitEvent(i+1, waitReply, func(b redir.Body) bool { return b.Type() == redir.TypeAltSettingStatus })
	if err != nil {
		return fmt.Errorf("get_alt_setting: %w", err)
	}
	as := b.(redir.AltSettingStatus)
	res.GetAlt = fmt.Sprintf("%d:%d/%d", as.Status, as.Interface, as.Alt)

	// reset: the usb-host resets the device (no reply is defined); the
	// endpoints work after it.
	if err := g.Send(redir.Reset{}); err != nil {
		return err
	}
	if ok, err := loopOnce(g, in, out, pattern(2000, 4321)); err != nil {
		return fmt.Errorf("after reset: %w", err)
	} else {
		res.AfterResetOK = ok
	}

	// A bulk IN with nothing to loop back stays pending; cancel_data_packet
	// must end it with status cancelled, after which the endpoint works.
	id, ch, err := g.Submit(redir.BulkPacket{Endpoint: in, Length: bulkBuflen})
	if err != nil {
		return err
	}
	// The usb-host reads its socket in order, so the bulk packet has been
	// handed to libusb by the time it reads the cancel.
	if err := g.Cancel(id); err != nil {
		return err
	}
	cb, err := usbredirpeer.Await(ch, waitReply)
	if err != nil {
		return fmt.Errorf("cancelled bulk in: %w", err)
	}
	res.CancelStatus = int(cb.(redir.BulkPacket).Status)
	if res.AfterCancelOK, err = loopOnce(g, in, out, pattern(rounds, 1234)); err != nil {
		return fmt.Errorf("after cancel: %w", err)
	}
	if err := g.Err(); err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	return nil
}

// loopOnce writes data to the loopback function and reads it back,
// reporting whether it came back whole.
func loopOnce(g *usbredirpeer.Guest, in, out uint8, data []byte) (bool, error) {
	o, err := g.Bulk(redir.BulkPacket{Endpoint: out, Length: uint32(len(data)), Data: data}, waitReply)
	if err != nil {
		return false, err
	}
	if o.Status != redir.StatusSuccess {
		return false, fmt.Errorf("bulk out: status %d", o.Status)
	}
	back, err := g.Bulk(redir.BulkPacket{Endpoint: in, Length: bulkBuflen}, waitReply)
	if err != nil {
		return false, err
	}
	if back.Status != redir.StatusSuccess {
		return false, fmt.Errorf("bulk in: status %d", back.Status)
	}
	return bytes.Equal(back.Data, data), nil
}

// bulkEndpoints finds the bulk IN and OUT endpoints in ep_info.
func bulkEndpoints(ep redir.EPInfo) (in, out uint8, err error) {
	for i, t := range ep.EPType {
		if t != redir.EPBulk {
			continue
		}
		addr := uint8(i & 0x0f)
		if i&0x10 != 0 {
			addr |= 0x80
		}
		if addr&0x80 != 0 && in == 0 {
			in = addr
		} else if addr&0x80 == 0 && out == 0 {
			out = addr
		}
	}
	if in == 0 || out == 0 {
		return 0, 0, fmt.Errorf("ep_info has no bulk IN and OUT pair: %+v", ep.EPType)
	}
	return in, out, nil
}

// pattern is round r's n bytes: the round and offset mixed, so a stale or
// shifted buffer does not match.
func pattern(r, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r*7 + i*13 + i>>8)
	}
	return b
}

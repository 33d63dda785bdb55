package qemu_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/ycq-dev/ycq/qemu"
)

// An initramfs for a guest: the base entries, an /init and a module list.
// Parent directories are added before their children.
func ExampleBuildInitramfs() {
	files := append(qemu.BaseFiles(),
		qemu.File{Path: "/init", Mode: 0o755, Data: []byte("#!/bin/true\n")},
		qemu.File{Path: qemu.GuestModuleList, Mode: 0o644, Data: []byte("/lib/modules/v/vfio.ko.xz\n")},
	)
	var img bytes.Buffer
	if err := qemu.BuildInitramfs(&img, files); err != nil {
		fmt.Println(err)
		return
	}
	rr := cpio.Newc.Reader(bytes.NewReader(img.Bytes()))
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %o\n", rec.Name, rec.Mode)
	}
	// Output:
	// dev 40755
	// dev/console 20600
	// proc 40555
	// sys 40555
	// tmp 41777
	// init 100755
	// etc 40755
	// etc/ycq 40755
	// etc/ycq/modules 100644
}

//go:build linux

// Command guesthello is the smoke test's guest /init: it prints
// "YCQ-GUEST-OK <kernel release>", loads the modules listed in
// guest.ModuleList (if the image has one) printing one
// "YCQ-MODULE <file> loaded" or "YCQ-MODULE <file> error: ..." line each
// and a "YCQ-PROC-MODULE <name>" line for each entry of /proc/modules, and
// powers off.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/ycq-dev/ycq/qemu/guest"
)

func main() {
	guest.Main(func() error {
		fmt.Printf("YCQ-GUEST-OK %s\n", guest.KernelRelease())
		if _, err := os.Stat(guest.ModuleList); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		res, err := guest.LoadModules(guest.ModuleList)
		for _, r := range res {
			if r.Err != nil {
				fmt.Printf("YCQ-MODULE %s error: %v\n", path.Base(r.File), r.Err)
			} else {
				fmt.Printf("YCQ-MODULE %s loaded\n", path.Base(r.File))
			}
		}
		if mods, rerr := os.ReadFile("/proc/modules"); rerr == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(mods)), "\n") {
				name, _, _ := strings.Cut(line, " ")
				fmt.Printf("YCQ-PROC-MODULE %s\n", name)
			}
		}
		return err
	})
}

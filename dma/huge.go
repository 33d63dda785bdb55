package dma

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// procRoot is where hugeFallbackReason reads the system's huge page
// settings; tests point it at a fixture.
var procRoot = "/proc"

// hugeFallbackReason turns the error of a failed huge page mapping into a
// sentence an operator can act on.
func hugeFallbackReason(err error) string {
	nr := readTrim(procRoot + "/sys/vm/nr_hugepages")
	free := meminfo("HugePages_Free")
	switch {
	case nr == "0":
		return "no 2 MiB huge pages are reserved (vm.nr_hugepages=0); reserve some with sysctl vm.nr_hugepages=N"
	case errors.Is(err, unix.ENOMEM) && free != "":
		return fmt.Sprintf("not enough free 2 MiB huge pages (vm.nr_hugepages=%s, HugePages_Free=%s)", nr, free)
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Sprintf("this kernel does not offer 2 MiB huge pages here: %v", err)
	default:
		return fmt.Sprintf("huge page mapping failed: %v", err)
	}
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func meminfo(key string) string {
	for _, line := range strings.Split(readTrim(procRoot+"/meminfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

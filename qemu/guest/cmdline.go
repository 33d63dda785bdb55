package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Param is the value of name=value on the kernel command line
// (/proc/cmdline), or def when the parameter is not there. The host side
// passes a guest's settings that way (qemu.VMConfig.Params).
func Param(name, def string) string {
	b, _ := os.ReadFile("/proc/cmdline")
	return param(string(b), name, def)
}

// param is Param on the command line cmdline.
func param(cmdline, name, def string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return def
}

// PrintResult prints v as JSON on the guest's machine-readable line,
// "YCQ-RESULT {json}", which the host decodes into qemu.VMResult.Line.
func PrintResult(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "guest: result: " + err.Error()})
	}
	fmt.Printf("YCQ-RESULT %s\n", b)
}

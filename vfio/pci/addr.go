package pci

import (
	"fmt"
	"strings"
)

// ParseAddr checks a PCI address and returns it in the kernel's spelling:
// lower-case hex "DDDD:BB:DD.F" (domain, bus, device, function), as sysfs
// names devices. The domain may be left out ("03:00.0" means
// "0000:03:00.0") and may be longer than four digits (VMD domains are
// "10000:..."). The result is safe to use as a path element.
func ParseAddr(s string) (string, error) {
	orig := s
	s = strings.ToLower(strings.TrimSpace(s))
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %q: %s (want DDDD:BB:DD.F, such as 0000:03:00.0)", ErrBadAddress, orig, why)
	}
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 2:
		parts = append([]string{"0000"}, parts...)
	case 3:
	default:
		return bad("wrong number of ':'")
	}
	dom, bus := parts[0], parts[1]
	dev, fn, ok := strings.Cut(parts[2], ".")
	if !ok {
		return bad("no '.' before the function")
	}
	if len(dom) < 4 || len(dom) > 8 || !isHex(dom) {
		return bad("domain must be 4 to 8 hex digits")
	}
	if len(bus) != 2 || !isHex(bus) {
		return bad("bus must be 2 hex digits")
	}
	if len(dev) != 2 || !isHex(dev) || dev[0] > '1' {
		return bad("device must be 2 hex digits from 00 to 1f")
	}
	if len(fn) != 1 || fn[0] < '0' || fn[0] > '7' {
		return bad("function must be a digit from 0 to 7")
	}
	return dom + ":" + bus + ":" + dev + "." + fn, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

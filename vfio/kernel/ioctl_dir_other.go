//go:build ppc64 || ppc64le || mips || mipsle || mips64 || mips64le

package kernel

// Direction bits of powerpc and mips (arch/*/include/uapi/asm/ioctl.h),
// where _IOC_NONE is 1 and the direction field starts at bit 29.
const (
	_IOC_NONE     = 1
	_IOC_DIRSHIFT = 29
)

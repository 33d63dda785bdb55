//go:build !race

#include "textflag.h"

// func storeRelease64(addr *uint64, v uint64)
// On amd64 every store has release ordering: a plain MOV is enough.
TEXT ·storeRelease64(SB), NOSPLIT, $0-16
	MOVQ addr+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, (AX)
	RET

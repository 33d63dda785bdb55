#include "textflag.h"

// func prefetchLines(p unsafe.Pointer, n, stride int, write bool)
TEXT ·prefetchLines(SB), NOSPLIT, $0-25
	MOVD p+0(FP), R0
	MOVD n+8(FP), R1
	MOVD stride+16(FP), R2
	MOVBU write+24(FP), R3
	CMP $0, R1
	BLE done
	CBNZ R3, write
read:
	PRFM (R0), PLDL1KEEP
	ADD R2, R0
	SUBS $1, R1
	BNE read
	RET
write:
	PRFM (R0), PSTL1KEEP
	ADD R2, R0
	SUBS $1, R1
	BNE write
done:
	RET

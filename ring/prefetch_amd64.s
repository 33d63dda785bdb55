#include "textflag.h"

// func prefetchLines(p unsafe.Pointer, n, stride int, write bool)
TEXT ·prefetchLines(SB), NOSPLIT, $0-25
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	MOVQ stride+16(FP), DX
	MOVBLZX write+24(FP), BX
	TESTQ CX, CX
	JLE done
	TESTQ BX, BX
	JNZ write
read:
	PREFETCHT0 (AX)
	ADDQ DX, AX
	DECQ CX
	JNZ read
	RET
write:
	// PREFETCHW (AX): the assembler has no mnemonic for it.
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08
	ADDQ DX, AX
	DECQ CX
	JNZ write
done:
	RET

#include "textflag.h"

TEXT ·handler(SB),NOSPLIT|NOFRAME,$0
	RET

TEXT ·restorer(SB),NOSPLIT|NOFRAME,$0
	MOVD	$139, R8 // rt_sigreturn
	SVC

// func handlerPCs() (h, r uintptr)
TEXT ·handlerPCs(SB),NOSPLIT,$0-16
	MOVD	$·handler(SB), R0
	MOVD	R0, h+0(FP)
	MOVD	$·restorer(SB), R0
	MOVD	R0, r+8(FP)
	RET

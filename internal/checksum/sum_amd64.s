#include "textflag.h"

// func sumAVX2(b []byte) uint64
//
// 64 bytes a loop: two 32-byte loads, each split into the low and the
// high 32-bit halves of its 64-bit lanes (AND with a mask, shift right),
// added into four accumulators of four 64-bit lanes, which are added up
// at the end. len(b) is a multiple of 64.
TEXT ·sumAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR    Y4, Y4, Y4
	VPXOR    Y5, Y5, Y5
	VPXOR    Y6, Y6, Y6
	VPXOR    Y7, Y7, Y7
	VPCMPEQQ Y8, Y8, Y8
	VPSRLQ   $32, Y8, Y8 // 0x00000000ffffffff in each lane
	TESTQ    CX, CX
	JZ       done

loop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	VPSRLQ  $32, Y0, Y2
	VPSRLQ  $32, Y1, Y3
	VPAND   Y8, Y0, Y0
	VPAND   Y8, Y1, Y1
	VPADDQ  Y0, Y4, Y4
	VPADDQ  Y2, Y5, Y5
	VPADDQ  Y1, Y6, Y6
	VPADDQ  Y3, Y7, Y7
	ADDQ    $64, SI
	SUBQ    $64, CX
	JNZ     loop

done:
	VPADDQ       Y5, Y4, Y4
	VPADDQ       Y7, Y6, Y6
	VPADDQ       Y6, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPADDQ       X5, X4, X4
	VPSHUFD      $0x4e, X4, X5 // the two 64-bit lanes swapped
	VPADDQ       X5, X4, X4
	VMOVQ        X4, AX
	VZEROUPPER
	MOVQ         AX, ret+24(FP)
	RET

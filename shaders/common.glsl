// Shared by every Baton compute shader: the extensions, and the step-information layout.
//
// The step-info buffer (uint) holds, at offsets given in each shader's push constants:
//   tok_seq[T]    the sequence of each token of the step,
//   seq_slot[S]   the state slot of each sequence,
//   seq_first[S]  the index of its first token, seq_len[S] its token count,
//   row_map[R]    the token rows the head reads (the last token of each sequence, or all).
#extension GL_EXT_control_flow_attributes : require

// State slot rows, per layer: [slot][5][C] (engine/backend.h).
#define ROW_ATT_XX 0u
#define ROW_ATT_AA 1u
#define ROW_ATT_BB 2u
#define ROW_ATT_PP 3u
#define ROW_FFN_XX 4u

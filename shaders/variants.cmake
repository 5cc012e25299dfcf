# The one table of compute-shader variants: NAME|SOURCE|DEFINES (space-separated -D values).
# Names follow <op>_<in>_<out>[_<variant>]; only variants the engine dispatches are listed, and the
# generated header gives each an enum value, so an unused or missing variant shows at compile time.
set(BATON_SHADER_VARIANTS
  # LayerNorm of rows of x, optionally gathered through a row map (the head's last tokens).
  "layernorm_f32_f32|layernorm.comp|"
  # LayerNorm fused with the token shift: xx = LN(x); xk, xv, xr = lerp(previous xx, xx, mix).
  "ln_shift_f32_f32|ln_shift.comp|"
  # Copies the last token's xx of each sequence into its state slot (channel-mix shift state).
  "state_save_f32_f32|state_save.comp|"
  # The RWKV-4 WKV recurrence, sequential over each sequence's tokens, times sigmoid(r).
  "wkv_f32_f32|wkv.comp|"
  # y = W x for fp16 W (interleaved row blocks) and fp32 x; CB = tokens per workgroup.
  # All three compute every output with the same fixed reduction order (batch invariance).
  "matmul_f16_f32_b1|matmul.comp|CB=1"
  "matmul_f16_f32_b8|matmul.comp|CB=8"
  "matmul_f16_f32_b32|matmul.comp|CB=32"
  # Sampling: penalties, temperature, top-k, top-p and the draw, one workgroup per sequence.
  "sample_f32_i32|sample.comp|"
  # Reads the next product's first weights ahead (a one-token step, where tuning finds it pays).
  "prefetch_u32_u32|prefetch.comp|"
  # x split into fp16 hi and lo for the tensor cores' XG matmuls (a mirror of x's buffer).
  "split_f32_f16|split.comp|"
  # The bench's memory-bandwidth yardstick.
  "copy_u32_u32|copy.comp|"
)

# The one-token matmul's alternatives that `baton bench --sweep` measures beside the default
# (WR rows per workgroup, UNROLL weight loads in flight, XS=1: x staged in shared memory). Every
# one sums in the default's order (bitwise the same y; test_vk_ops checks). Their pipelines are
# built on first use, so a backend that never sweeps pays nothing for them.
set(BATON_SHADER_VARIANTS_ON_DEMAND
  "matmul_f16_f32_b1_wr4|matmul.comp|CB=1 WR=4u"
  "matmul_f16_f32_b1_wr16|matmul.comp|CB=1 WR=16u"
  "matmul_f16_f32_b1_wr32|matmul.comp|CB=1 WR=32u"
  "matmul_f16_f32_b1_u4|matmul.comp|CB=1 UNROLL=4u"
  "matmul_f16_f32_b1_u16|matmul.comp|CB=1 UNROLL=16u"
  "matmul_f16_f32_b1_xs|matmul.comp|CB=1 XS=1"
  "matmul_f16_f32_b1_wr16_xs|matmul.comp|CB=1 WR=16u XS=1"
  "matmul_f16_f32_b1_wr32_xs|matmul.comp|CB=1 WR=32u XS=1"
  "matmul_f16_f32_b1_wr16_u16_xs|matmul.comp|CB=1 WR=16u UNROLL=16u XS=1"
  # Each x-staging one's twin that computes its input's LayerNorm and token shift itself
  # (LN=1): a one-token layer's k/v/r and FFN key/receptance products without ln_shift.
  "matmul_f16_f32_b1_xs_ln|matmul.comp|CB=1 XS=1 LN=1"
  "matmul_f16_f32_b1_wr16_xs_ln|matmul.comp|CB=1 WR=16u XS=1 LN=1"
  "matmul_f16_f32_b1_wr32_xs_ln|matmul.comp|CB=1 WR=32u XS=1 LN=1"
  "matmul_f16_f32_b1_wr16_u16_xs_ln|matmul.comp|CB=1 WR=16u UNROLL=16u XS=1 LN=1"
  # ... and the twin that computes its input, r * wkv, itself (WKV=1): a one-token layer's
  # output product without the WKV dispatch.
  "matmul_f16_f32_b1_xs_wkv|matmul.comp|CB=1 XS=1 WKV=1"
  "matmul_f16_f32_b1_wr16_xs_wkv|matmul.comp|CB=1 WR=16u XS=1 WKV=1"
  "matmul_f16_f32_b1_wr32_xs_wkv|matmul.comp|CB=1 WR=32u XS=1 WKV=1"
  "matmul_f16_f32_b1_wr16_u16_xs_wkv|matmul.comp|CB=1 WR=16u UNROLL=16u XS=1 WKV=1"
  # The 8- and 32-token variants with RT rows per thread (x loaded once for RT rows; the same
  # sums): the sweep's alternatives for batched decode and prefill (vk_batched_configs).
  "matmul_f16_f32_b8_rt2|matmul.comp|CB=8 WR=16u RT=2"
  "matmul_f16_f32_b8_rt4|matmul.comp|CB=8 WR=8u RT=4"
  "matmul_f16_f32_b32_rt2|matmul.comp|CB=32 WR=16u RT=2"
  "matmul_f16_f32_b32_rt4|matmul.comp|CB=32 WR=8u RT=4"
  # 64 tokens per workgroup for steps of more than 32: each weight read half as often as at 32.
  "matmul_f16_f32_b64_rt2|matmul.comp|CB=64 WR=16u RT=2"
  # Every matmul on the tensor cores (GL_NV_cooperative_matrix 16x8x8 products, x split into fp16
  # hi + lo, side by side in x's fragments), where tuning chooses them or BATON_VK_COOPMAT=1
  # asks; built only there. ROWS and TOKENS per workgroup (FK: per subgroup), ROUND chunks per
  # round; every one sums in the same order (vk_coop_configs in vk_kernels.c). t4 and t8, for
  # steps of up to 8 tokens, stage x in shared memory as they go (ROUND chunks of it a round);
  # DB: the next round's weight fragments load during this round.
  "matmul_coop_r32_t4_db|matmul_coop.comp|ROWS=32 TOKENS=4 ROUND=8 DB=1"
  "matmul_coop_r32_t4|matmul_coop.comp|ROWS=32 TOKENS=4 ROUND=8"
  "matmul_coop_r32_t4_k16|matmul_coop.comp|ROWS=32 TOKENS=4 ROUND=16"
  "matmul_coop_r64_t4_db|matmul_coop.comp|ROWS=64 TOKENS=4 ROUND=4 DB=1"
  "matmul_coop_r32_t8_db|matmul_coop.comp|ROWS=32 TOKENS=8 ROUND=8 DB=1"
  "matmul_coop_r32_t8|matmul_coop.comp|ROWS=32 TOKENS=8 ROUND=8"
  # XG (g): x split by split_f32_f16 beforehand and read from memory, no staging or round
  # barriers (double-buffered); the only kind for larger steps. 64 rows: a tile of two blocks.
  "matmul_coop_r32_t4_g|matmul_coop.comp|ROWS=32 TOKENS=4 ROUND=8 DB=1 XG=1"
  "matmul_coop_r32_t32_g|matmul_coop.comp|ROWS=32 TOKENS=32 ROUND=4 DB=1 XG=1"
  "matmul_coop_r32_t16_g|matmul_coop.comp|ROWS=32 TOKENS=16 ROUND=4 DB=1 XG=1"
  "matmul_coop_r64_t16_g|matmul_coop.comp|ROWS=64 TOKENS=16 ROUND=4 DB=1 XG=1"
  # XP (gp): a round's x fragments load a round ahead too, beside its weight fragments.
  "matmul_coop_r32_t32_gp|matmul_coop.comp|ROWS=32 TOKENS=32 ROUND=2 DB=1 XG=1 XP=1"
  "matmul_coop_r32_t16_gp|matmul_coop.comp|ROWS=32 TOKENS=16 ROUND=4 DB=1 XG=1 XP=1"
  # FK (f, named by the workgroup's rows x tokens): the subgroups a grid of GRID_ROWS rows, each
  # its own ROWS x TOKENS over every segment, sharing the workgroup's weights and x through L1.
  "matmul_coop_f128x32|matmul_coop.comp|ROWS=32 TOKENS=16 GRID_ROWS=4 ROUND=4 DB=1 XG=1 FK=1"
  "matmul_coop_f64x64|matmul_coop.comp|ROWS=32 TOKENS=16 GRID_ROWS=2 ROUND=4 DB=1 XG=1 FK=1"
  "matmul_coop_f128x64|matmul_coop.comp|ROWS=32 TOKENS=32 GRID_ROWS=4 ROUND=2 DB=1 XG=1 FK=1"
  "matmul_coop_f256x32|matmul_coop.comp|ROWS=32 TOKENS=32 GRID_ROWS=8 ROUND=2 DB=1 XG=1 FK=1"
  # The same with the matrix products in plain fp32 (test_vk_ops: the rest of it on any device),
  # in rounds of few chunks, small enough for lavapipe's 32 KiB of shared memory and so that the
  # tests' K give many rounds, odd and even counts and partial last rounds (the round never
  # changes a sum).
  "matmul_coop_r32_t4_db_emulated|matmul_coop.comp|ROWS=32 TOKENS=4 ROUND=2 DB=1 EMULATE=1"
  "matmul_coop_r32_t4_emulated|matmul_coop.comp|ROWS=32 TOKENS=4 ROUND=8 EMULATE=1"
  "matmul_coop_r32_t4_k16_emulated|matmul_coop.comp|ROWS=32 TOKENS=4 ROUND=4 EMULATE=1"
  "matmul_coop_r64_t4_db_emulated|matmul_coop.comp|ROWS=64 TOKENS=4 ROUND=2 DB=1 EMULATE=1"
  "matmul_coop_r32_t8_db_emulated|matmul_coop.comp|ROWS=32 TOKENS=8 ROUND=2 DB=1 EMULATE=1"
  "matmul_coop_r32_t8_emulated|matmul_coop.comp|ROWS=32 TOKENS=8 ROUND=8 EMULATE=1"
  "matmul_coop_r32_t4_g_emulated|matmul_coop.comp|ROWS=32 TOKENS=4 ROUND=2 DB=1 XG=1 EMULATE=1"
  "matmul_coop_r32_t32_g_emulated|matmul_coop.comp|ROWS=32 TOKENS=32 ROUND=2 DB=1 XG=1 EMULATE=1"
  "matmul_coop_r32_t16_g_emulated|matmul_coop.comp|ROWS=32 TOKENS=16 ROUND=1 DB=1 XG=1 EMULATE=1"
  "matmul_coop_r64_t16_g_emulated|matmul_coop.comp|ROWS=64 TOKENS=16 ROUND=2 DB=1 XG=1 EMULATE=1"
  "matmul_coop_r32_t32_gp_emulated|matmul_coop.comp|ROWS=32 TOKENS=32 ROUND=2 DB=1 XG=1 XP=1 EMULATE=1"
  "matmul_coop_r32_t16_gp_emulated|matmul_coop.comp|ROWS=32 TOKENS=16 ROUND=1 DB=1 XG=1 XP=1 EMULATE=1"
  "matmul_coop_f128x32_emulated|matmul_coop.comp|ROWS=32 TOKENS=16 GRID_ROWS=4 ROUND=2 DB=1 XG=1 FK=1 EMULATE=1"
  "matmul_coop_f64x64_emulated|matmul_coop.comp|ROWS=32 TOKENS=16 GRID_ROWS=2 ROUND=1 DB=1 XG=1 FK=1 EMULATE=1"
  "matmul_coop_f128x64_emulated|matmul_coop.comp|ROWS=32 TOKENS=32 GRID_ROWS=4 ROUND=2 DB=1 XG=1 FK=1 EMULATE=1"
  "matmul_coop_f256x32_emulated|matmul_coop.comp|ROWS=32 TOKENS=32 GRID_ROWS=8 ROUND=1 DB=1 XG=1 FK=1 EMULATE=1"
)

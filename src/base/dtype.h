/* dtype.h — the element types a safetensors file can hold: names, sizes and scalar
 * conversions to f32. Bulk (vectorised) conversion lives in the kernels, not here. */
#ifndef LC_DTYPE_H
#define LC_DTYPE_H

#include <stdint.h>
#include <string.h>

typedef enum {
    LC_DT_F32, LC_DT_F16, LC_DT_BF16, LC_DT_F8_E4M3, LC_DT_F8_E5M2, LC_DT_F64,
    LC_DT_I64, LC_DT_I32, LC_DT_I16, LC_DT_I8, LC_DT_U64, LC_DT_U32, LC_DT_U16, LC_DT_U8,
    LC_DT_BOOL,
    /* not safetensors dtypes: our block-quantized matrix formats (docs/FORMATS.md), stored as
     * an I8 / U8 tensor plus an F16 NAME_scale tensor */
    LC_DT_Q8_0, LC_DT_Q4_0,
    LC_DT_COUNT
} lc_dtype;
#define LC_QK 32 /* weights per Q8_0 / Q4_0 block (along a row) */

const char *lc_dtype_name(lc_dtype t);          /* safetensors spelling: "BF16", ... */
int lc_dtype_from_name(const char *s, lc_dtype *t); /* 0 if known */
int lc_dtype_size(lc_dtype t);                  /* bytes per element (Q8_0: 1, Q4_0: 0, see below) */
double lc_dtype_weight_bytes(lc_dtype t);       /* bytes per matrix weight, block scales included */

static inline float lc_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t lc_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float lc_f16_to_f32(uint16_t h);
uint16_t lc_f32_to_f16(float f);
/* e4m3fn: bias 7, no infinities, 0x7f/0xff are NaN, max finite 448. */
float lc_fp8e4m3_to_f32(uint8_t v);
uint8_t lc_f32_to_fp8e4m3(float f); /* round to nearest even, saturating at ±448 */
float lc_fp8e5m2_to_f32(uint8_t v);

/* Reads element i of a buffer of type t as f32 (unaligned-safe). Integer types convert. */
float lc_load_f32(const void *data, lc_dtype t, int64_t i);

#endif

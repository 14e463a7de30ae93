/* dtype.c — dtype names/sizes and exact scalar conversions (the references the fast
 * kernels are tested against). */
#include "dtype.h"

#include <math.h>

static const struct { const char *name; int size; } k_dtypes[LC_DT_COUNT] = {
    [LC_DT_F32] = {"F32", 4},         [LC_DT_F16] = {"F16", 2},   [LC_DT_BF16] = {"BF16", 2},
    [LC_DT_F8_E4M3] = {"F8_E4M3", 1}, [LC_DT_F8_E5M2] = {"F8_E5M2", 1},
    [LC_DT_F64] = {"F64", 8},         [LC_DT_I64] = {"I64", 8},   [LC_DT_I32] = {"I32", 4},
    [LC_DT_I16] = {"I16", 2},         [LC_DT_I8] = {"I8", 1},     [LC_DT_U64] = {"U64", 8},
    [LC_DT_U32] = {"U32", 4},         [LC_DT_U16] = {"U16", 2},   [LC_DT_U8] = {"U8", 1},
    [LC_DT_BOOL] = {"BOOL", 1},       [LC_DT_Q8_0] = {"Q8_0", 1}, [LC_DT_Q4_0] = {"Q4_0", 0},
};

const char *lc_dtype_name(lc_dtype t) { return (unsigned)t < LC_DT_COUNT ? k_dtypes[t].name : "?"; }
int lc_dtype_size(lc_dtype t) { return (unsigned)t < LC_DT_COUNT ? k_dtypes[t].size : 0; }

double lc_dtype_weight_bytes(lc_dtype t) {
    if (t == LC_DT_Q8_0) return (LC_QK + 2.0) / LC_QK;
    if (t == LC_DT_Q4_0) return (LC_QK / 2 + 2.0) / LC_QK;
    return lc_dtype_size(t);
}

int lc_dtype_from_name(const char *s, lc_dtype *t) {
    for (int i = 0; i <= LC_DT_BOOL; i++) /* file dtypes only */
        if (strcmp(s, k_dtypes[i].name) == 0) {
            *t = (lc_dtype)i;
            return 0;
        }
    return -1;
}

float lc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float f;
    if (exp == 0) {
        f = ldexpf((float)man, -24); /* zero or subnormal */
        return sign ? -f : f;
    }
    uint32_t u;
    if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 112) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

uint16_t lc_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7e00;
    if (a >= 65520.0f) return sign | 0x7c00;
    if (a < 6.103515625e-05f) { /* subnormal: multiples of 2^-24 */
        float q = rintf(a * 16777216.0f);
        return sign | (uint16_t)q;
    }
    int e;
    float m = frexpf(a, &e);                    /* a = m * 2^e, m in [0.5, 1) */
    float q = rintf(ldexpf(m, 11));             /* 11 significant bits */
    if (q >= 2048.0f) { q /= 2; e++; }
    return sign | (uint16_t)(((e + 14) << 10) | ((uint32_t)q & 0x3ff));
}

float lc_fp8e4m3_to_f32(uint8_t v) {
    int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float f;
    if (exp == 15 && man == 7) return NAN;
    if (exp == 0) f = ldexpf((float)man, -9);
    else f = ldexpf((float)(8 + man), exp - 10);
    return sign ? -f : f;
}

uint8_t lc_f32_to_fp8e4m3(float f) {
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (isnan(f)) return 0x7f;
    if (a >= 448.0f) return sign | 0x7e;
    if (a < ldexpf(1.0f, -6)) { /* subnormal: multiples of 2^-9 */
        float q = rintf(ldexpf(a, 9));
        return sign | (uint8_t)q; /* q == 8 rolls into the smallest normal, encoded 0x08 */
    }
    int e;
    float m = frexpf(a, &e);        /* a = m * 2^e */
    float q = rintf(ldexpf(m, 4));  /* 4 significant bits: 8..16 */
    if (q >= 16.0f) { q /= 2; e++; }
    int exp = e - 1 + 7;
    if (exp > 15 || (exp == 15 && (int)q - 8 == 7)) return sign | 0x7e;
    return sign | (uint8_t)((exp << 3) | ((int)q - 8));
}

float lc_fp8e5m2_to_f32(uint8_t v) { return lc_f16_to_f32((uint16_t)((uint16_t)v << 8)); }

float lc_load_f32(const void *data, lc_dtype t, int64_t i) {
    const uint8_t *p = (const uint8_t *)data + (size_t)i * (size_t)lc_dtype_size(t);
    switch (t) {
    case LC_DT_F32: { float f; memcpy(&f, p, 4); return f; }
    case LC_DT_F64: { double d; memcpy(&d, p, 8); return (float)d; }
    case LC_DT_F16: { uint16_t h; memcpy(&h, p, 2); return lc_f16_to_f32(h); }
    case LC_DT_BF16: { uint16_t h; memcpy(&h, p, 2); return lc_bf16_to_f32(h); }
    case LC_DT_F8_E4M3: return lc_fp8e4m3_to_f32(*p);
    case LC_DT_F8_E5M2: return lc_fp8e5m2_to_f32(*p);
    case LC_DT_I64: { int64_t v; memcpy(&v, p, 8); return (float)v; }
    case LC_DT_I32: { int32_t v; memcpy(&v, p, 4); return (float)v; }
    case LC_DT_I16: { int16_t v; memcpy(&v, p, 2); return (float)v; }
    case LC_DT_I8: return (float)(int8_t)*p;
    case LC_DT_U64: { uint64_t v; memcpy(&v, p, 8); return (float)v; }
    case LC_DT_U32: { uint32_t v; memcpy(&v, p, 4); return (float)v; }
    case LC_DT_U16: { uint16_t v; memcpy(&v, p, 2); return (float)v; }
    case LC_DT_U8: case LC_DT_BOOL: return (float)*p;
    case LC_DT_Q8_0: case LC_DT_Q4_0: case LC_DT_COUNT: break; /* blocks, not elements */
    }
    return NAN;
}

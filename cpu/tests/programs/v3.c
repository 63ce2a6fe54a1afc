/* A freestanding workload for tests/compiled.rs, built with gcc -O3 -march=x86-64-v3 (plus
 * AES-NI, PCLMULQDQ and SHA) so the compiler emits AVX2, FMA, F16C, BMI1/2, LZCNT and MOVBE
 * code of its own choosing. run() hashes, counts, filters and computes over `buf` and writes
 * its results back there; the test runs it natively and in the interpreter and compares. */
#include <immintrin.h>

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define N 2048

void *memset(void *d, int c, u64 n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, u64 n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }

struct out {
    u64 fnv, rotmix, pext, zeros, matches, minmax, sumsq;
    u32 hist[16];
    float fma[64];
    double dsqrt[32];
    u16 halves[32];
    u8 aes[16], clmul[16], sha[16];
    u8 upper[64];
};

static u64 fnv1a(const u8 *p, u64 n) {
    u64 h = 0xcbf29ce484222325ul;
    for (u64 i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ul;
    return h;
}

static u64 rotmix(const u64 *w, u64 n) {
    u64 h = 0;
    for (u64 i = 0; i < n; i++) {
        u64 x = w[i];
        h ^= (x >> (i & 63)) | (x << ((64 - i) & 63));      /* rorx/shlx/shrx */
        h += __builtin_bswap64(x) ^ (x & (x - 1));           /* movbe/bswap, blsr */
        h ^= (u64)__builtin_ctzll(x | 1) << 8 | (u64)__builtin_clzll(x | 1); /* tzcnt, lzcnt */
        h ^= ~h & x;                                         /* andn */
    }
    return h;
}

u64 run(u8 *buf) {
    struct out *o = (struct out *)(buf + N);
    const u64 *w = (const u64 *)buf;
    o->fnv = fnv1a(buf, N);
    o->rotmix = rotmix(w, N / 8);
    o->pext = _pext_u64(w[0], w[1]) ^ _pdep_u64(w[2], w[3]) ^ _bzhi_u64(w[4], (u32)w[5] & 63) ^ _mulx_u64(w[6], w[7], (unsigned long long *)&o->zeros);
    u64 m = 0;
    for (u64 i = 0; i < N; i++) m += buf[i] == 'a' || buf[i] < 16;  /* vpcmpeqb, vpminub */
    o->matches = m;
    int lo = 0x7fffffff, hi = -0x7fffffff;
    const int *iv = (const int *)buf;
    for (u64 i = 0; i < N / 4; i++) { lo = iv[i] < lo ? iv[i] : lo; hi = iv[i] > hi ? iv[i] : hi; }
    o->minmax = (u64)(u32)lo << 32 | (u32)hi;
    u64 s = 0;
    for (u64 i = 0; i < N / 4; i++) s += (u64)((long)iv[i] * iv[i]) >> 3;
    o->sumsq = s;
    for (u64 i = 0; i < 16; i++) o->hist[i] = 0;
    for (u64 i = 0; i < N; i++) o->hist[buf[i] >> 4]++;
    const float *f = (const float *)buf;
    float a[64], b[64];
    for (int i = 0; i < 64; i++) {
        a[i] = (float)(iv[i] & 0xffff) / 64.0f;
        b[i] = (float)(iv[64 + i] & 0xfff) * 0.125f - 100.0f;
    }
    for (int i = 0; i < 64; i++) o->fma[i] = a[i] * b[i] + (f[128 + i] == f[128 + i] ? 0.5f : 1.0f); /* vfmadd */
    for (int i = 0; i < 32; i++) o->dsqrt[i] = __builtin_sqrt((double)(w[i] >> 12)) * 1.5 + (double)i;
    __m256 h = _mm256_loadu_ps(a);
    _mm_storeu_si128((__m128i *)o->halves, _mm256_cvtps_ph(h, 0));
    _mm_storeu_si128((__m128i *)(o->halves + 8), _mm256_cvtps_ph(_mm256_loadu_ps(b), 1));
    __m128i k = _mm_loadu_si128((const __m128i *)buf), d = _mm_loadu_si128((const __m128i *)(buf + 16));
    for (int r = 0; r < 10; r++) {
        k = _mm_xor_si128(k, _mm_aeskeygenassist_si128(k, 0x1b));
        d = _mm_aesenc_si128(d, k);
    }
    _mm_storeu_si128((__m128i *)o->aes, _mm_aesdeclast_si128(d, k));
    _mm_storeu_si128((__m128i *)o->clmul, _mm_clmulepi64_si128(k, d, 0x10));
    __m128i st = _mm_sha256rnds2_epu32(k, d, _mm_sha256msg1_epu32(d, k));
    _mm_storeu_si128((__m128i *)o->sha, _mm_sha1rnds4_epu32(st, _mm_sha1msg2_epu32(k, d), 2));
    __m256i v = _mm256_loadu_si256((const __m256i *)(buf + 64));
    __m256i idx = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(buf + 96)), _mm256_set1_epi32(255));
    __m256i g = _mm256_i32gather_epi32((const int *)buf, idx, 4);
    v = _mm256_add_epi32(_mm256_permutevar8x32_epi32(v, idx), g);
    v = _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(buf + 128))));
    _mm256_storeu_si256((__m256i *)o->upper, _mm256_sllv_epi32(v, _mm256_srli_epi32(idx, 3)));
    _mm256_storeu_si256((__m256i *)(o->upper + 32), _mm256_permute4x64_epi64(_mm256_sad_epu8(v, g), 0x4e));
    return o->fnv ^ o->rotmix ^ o->matches;
}

/* An ordinary Linux program built with gcc -O2 -march=x86-64-v3 -static: hashing,
 * compression and floating point over generated data, so the compiler emits AVX2, FMA, BMI1/2,
 * LZCNT and MOVBE where it likes. It prints its results; the test compares the output of the
 * same binary on the host and inside the guest. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define N (1u << 20)

static uint8_t data[N];
static uint8_t packed[2 * N];
static float fa[4096], fb[4096];
static double da[4096];

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* FNV-1a over 64-bit words with a rotate-multiply finish (vectorised by gcc). */
static uint64_t hash_words(const uint8_t *p, size_t n) {
    uint64_t lanes[8] = {0};
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int l = 0; l < 8; l++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * l, 8);
            lanes[l] = (lanes[l] ^ w) * 0x100000001b3ull;
        }
    uint64_t h = 0xcbf29ce484222325ull;
    for (int l = 0; l < 8; l++) h = ((h ^ lanes[l]) * 0x100000001b3ull) >> 7 | h << 57;
    return h;
}

/* Big-endian loads (MOVBE) and bit counting (LZCNT/TZCNT/POPCNT via BMI). */
static uint64_t bits(const uint8_t *p, size_t n) {
    uint64_t acc = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        uint32_t be = (uint32_t)p[i] << 24 | (uint32_t)p[i + 1] << 16 | (uint32_t)p[i + 2] << 8 | p[i + 3];
        acc += be ? (uint64_t)__builtin_clz(be) : 32;
        acc += be ? (uint64_t)__builtin_ctz(be) : 32;
        acc += (uint64_t)__builtin_popcount(be);
        acc ^= (uint64_t)be << (acc & 31) | be >> (acc & 15);
    }
    return acc;
}

/* Run-length plus back-reference compression of the buffer (an LZ77 flavour). */
static size_t compress(const uint8_t *in, size_t n, uint8_t *out) {
    size_t o = 0, i = 0;
    uint32_t table[4096] = {0};
    while (i < n) {
        uint32_t key = 0;
        if (i + 4 <= n) memcpy(&key, in + i, 4);
        uint32_t slot = (key * 2654435761u) >> 20;
        uint32_t cand = table[slot];
        table[slot] = (uint32_t)i;
        size_t len = 0;
        if (cand < i && i - cand < 65536)
            while (i + len < n && len < 255 && in[cand + len] == in[i + len]) len++;
        if (len >= 4) {
            out[o++] = 0xff;
            out[o++] = (uint8_t)len;
            out[o++] = (uint8_t)(i - cand);
            out[o++] = (uint8_t)((i - cand) >> 8);
            i += len;
        } else {
            out[o++] = in[i] == 0xff ? 0xfe : in[i];
            i++;
        }
    }
    return o;
}

int main(void) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < N; i++) {
        uint64_t r = xorshift(&s);
        /* Repetitive enough to compress. */
        data[i] = (r & 3) ? data[i >= 97 ? i - 97 : 0] : (uint8_t)(r >> 32);
    }
    printf("hash %016llx\n", (unsigned long long)hash_words(data, N));
    printf("bits %016llx\n", (unsigned long long)bits(data, N));
    size_t c = compress(data, N, packed);
    printf("compressed %zu -> %zu, hash %016llx\n", (size_t)N, c, (unsigned long long)hash_words(packed, c & ~63ul));
    for (int i = 0; i < 4096; i++) {
        fa[i] = (float)(xorshift(&s) % 20000) / 1000.0f - 10.0f;
        fb[i] = (float)(xorshift(&s) % 20000) / 1000.0f - 10.0f;
        da[i] = (double)(xorshift(&s) % 1000000) / 999983.0;
    }
    float dot = 0;
    for (int r = 0; r < 64; r++)
        for (int i = 0; i < 4096; i++) dot = __builtin_fmaf(fa[i], fb[i] * (float)(r + 1), dot);
    double poly = 0;
    for (int i = 0; i < 4096; i++) {
        double x = da[i];
        poly += ((((0.0083333 * x - 0.1666667) * x) * x + 1.0) * x) * (1.0 + x * x);
    }
    uint32_t fbits, dlo, dhi;
    memcpy(&fbits, &dot, 4);
    uint64_t pb;
    memcpy(&pb, &poly, 8);
    dlo = (uint32_t)pb;
    dhi = (uint32_t)(pb >> 32);
    printf("float %08x double %08x%08x\n", fbits, dhi, dlo);
    puts("v3-userland-done");
    return 0;
}

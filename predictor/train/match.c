// Match-model features for the "match input" experiment (match_exp.py): for
// each position i of a block, which byte the longest recent repeat predicts
// and how long that repeat is, computed from bytes 0..i-1 of the block only
// (the state starts empty at every block, as in the coder).
//
// feature(i) = 0 when no match is active, else 1 + predicted*8 + bucket(len),
// so there are 1 + 256*8 = 2049 values.
//
// Build: cc -O2 -shared -fPIC -o match.so match.c
#include <stdint.h>
#include <string.h>

#define MINLEN 5
#define HBITS 16

static int bucket(int len) {
	if (len < 8) return 0;
	if (len < 12) return 1;
	if (len < 16) return 2;
	if (len < 24) return 3;
	if (len < 32) return 4;
	if (len < 64) return 5;
	if (len < 256) return 6;
	return 7;
}

// match_block writes n features of block d[0..n) into out; table has
// 1<<HBITS entries of scratch space.
void match_block(const uint8_t *d, int n, uint16_t *out, uint32_t *table) {
	memset(table, 0, sizeof(uint32_t) << HBITS);
	int ptr = 0, len = 0;
	for (int i = 0; i < n; i++) {
		out[i] = ptr ? (uint16_t)(1 + d[ptr] * 8 + bucket(len)) : 0;
		if (ptr) {
			if (d[ptr] == d[i]) {
				ptr++;
				if (len < 65535) len++;
			} else {
				ptr = 0;
				len = 0;
			}
		}
		int k = i + 1; // bytes known
		if (k >= MINLEN) {
			uint32_t h = 0;
			for (int j = k - MINLEN; j < k; j++) h = (h + d[j] + 1) * 0x2F0B4A27u;
			h >>= 32 - HBITS;
			if (!ptr) {
				uint32_t c = table[h];
				if (c) {
					int l = 0;
					while (l < 32 && (int)c - 1 - l >= 0 && d[c - 1 - l] == d[k - 1 - l]) l++;
					if (l >= MINLEN) {
						ptr = (int)c;
						len = l;
					}
				}
			}
			table[h] = (uint32_t)k;
		}
	}
}

// match_blocks runs match_block over nb blocks: block b is d[starts[b] ..
// starts[b]+lens[b]) and its features go to out + b*stride.
void match_blocks(const uint8_t *d, int nb, const int64_t *starts, const int32_t *lens, uint16_t *out, int64_t stride, uint32_t *table) {
	for (int b = 0; b < nb; b++) match_block(d + starts[b], lens[b], out + b * stride, table);
}

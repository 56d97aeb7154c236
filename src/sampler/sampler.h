/* Choosing the next token from logits. */
#ifndef ELLIOTT_SAMPLER_H
#define ELLIOTT_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

typedef struct sampler_params {
    float temperature;        /* 0: greedy (argmax) */
    float top_p;              /* 1: off */
    int top_k;                /* 0: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off; llama.cpp's rule: divide positive logits, multiply negative */
    float presence_penalty;   /* 0: off; OpenAI's rule */
    float frequency_penalty;  /* 0: off; OpenAI's rule */
    int penalty_last_n;       /* how many recent tokens the penalties look at (default 64) */
    uint64_t seed;
} sampler_params;

/* Upper bounds that validation enforces. */
enum { SAMPLER_MAX_PENALTY_LAST_N = 65536, SAMPLER_MAX_VOCAB = 1 << 24, SAMPLER_MAX_TOP_LOGPROBS = 64 };

/* OpenAI's defaults: temperature 1, top_p 1, no penalties; seed from the OS. */
void sampler_params_default(sampler_params *p);
/* Checks ranges (NaN and infinities rejected); names the offending field in err. */
int sampler_params_validate(const sampler_params *p, el_err *err);

typedef struct sampler sampler;

sampler *sampler_create(int n_vocab, const sampler_params *p, el_err *err);
void sampler_free(sampler *s);
/* Remembers a token for the penalties (prompt and generated tokens alike). */
void sampler_accept(sampler *s, int32_t token);
/* Adds bias[i] to the logit of ids[i] before every draw (OpenAI's logit_bias).
 * Ids must be in [0, n_vocab) and biases finite; replaces an earlier set. */
int sampler_set_logit_bias(sampler *s, const int32_t *ids, const float *bias, int n, el_err *err);

/* Picks a token. logits (n_vocab floats) are used as scratch and changed. The same
 * seed, params and inputs give the same tokens.
 * Order: logit bias, penalties, then greedy argmax (lowest id on ties) when temperature is 0,
 * else top-k, temperature, softmax, top-p, min-p and a seeded draw. NaN logits
 * count as -infinity. */
int32_t sampler_sample(sampler *s, float *logits);

/* The log-softmax of logits (n_vocab values, unchanged; NaN counts as -infinity)
 * at token, and the k best tokens (k at most SAMPLER_MAX_TOP_LOGPROBS and n_vocab;
 * best first, lower id on ties) with theirs in top_ids/top_logprobs. Returns token's log-probability. */
float sampler_logprobs(const float *logits, int n_vocab, int32_t token, int k, int32_t *top_ids,
                       float *top_logprobs);

/* The k best token ids (0 <= k <= n_vocab) into ids[0..k), best first, lower id on ties,
 * NaN ranked as -infinity (the order sampler_logprobs lists). Returns 0, or -1 when out of
 * memory. */
int sampler_top_ids(const float *logits, int n_vocab, int k, int32_t *ids);

#endif

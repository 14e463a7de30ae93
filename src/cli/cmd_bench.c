/* cmd_bench.c — `longcat bench`: decode and prefill speed of a model (or a synthetic one)
 * as ratios to this machine's measured limits: DRAM read bandwidth for decode (each token reads
 * its active weights once) and the matmul peak for prefill (also shown against the FP32 FMA
 * peak, the cores' own ceiling). Weights are read once before timing
 * so they are resident (like llama-bench -lm none). Decode and prefill run --repeat passes,
 * each decode right after its own bandwidth measurement; the median pass is reported. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static const char *blas_core(void) {
#ifdef LC_HAVE_BLAS
    return lc_blas_corename();
#else
    return "not built";
#endif
}

/* The matmul peak: the faster of two F32 products of 2048 x 2048 x 2048 on the bench's threads —
 * OpenBLAS's own threaded sgemm with the kernels it has for this CPU, and longcat's own F32
 * GEMM. OpenBLAS runs in a child process (this binary again, `bench --blas-peak`) with
 * OPENBLAS_CORETYPE cleared, so lc_blas_init picks the CPU's widest kernels there (SkylakeX
 * on AVX-512) whatever this process was told: a machine's peak is not a setting. */
enum { PEAK_N = 2048 };

static double own_sgemm_gflops(void) {
    const int n = PEAK_N;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    double best = 1e30;
    if (a && b && c) {
        for (int64_t i = 0; i < (int64_t)n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
        lc_mat w = {(const uint8_t *)b, LC_DT_F32, n, n, NULL, 0, 0, NULL};
        for (int r = 0; r < 3; r++) {
            double t0 = lc_time_sec();
            lc_matmul(c, a, &w, n); /* the engine's own F32 GEMM path */
            double dt = lc_time_sec() - t0;
            best = dt < best ? dt : best;
        }
    }
    free(a);
    free(b);
    free(c);
    return best < 1e30 ? 2.0 * n * n * (double)n / best / 1e9 : 0;
}

/* posix_spawn, not fork: a forked copy of this process would make every page the next passes
 * write copy-on-write (a 512-token prefill ran 15% slower after it). */
static double blas_sgemm_gflops_child(int threads) {
    extern char **environ;
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    char **env = malloc((n_env + 1) * sizeof *env), nt[16];
    int fd[2];
    if (!env) return 0;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "OPENBLAS_CORETYPE=", 18)) env[k++] = environ[i];
    env[k] = NULL;
    if (pipe(fd)) {
        free(env);
        return 0;
    }
    snprintf(nt, sizeof nt, "%d", threads);
    char *args[] = {"longcat", "bench", "--blas-peak", "--threads", nt, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    pid_t pid;
    fflush(stdout);
    const int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, env);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    close(fd[1]);
    char buf[64] = {0};
    size_t got = 0;
    for (ssize_t r; !err && got < sizeof buf - 1 && (r = read(fd[0], buf + got, sizeof buf - 1 - got)) != 0;)
        if (r > 0) got += (size_t)r;
        else if (errno != EINTR) break;
    close(fd[0]);
    int st = 0;
    while (!err && waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    double g = !err && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? atof(buf) : 0;
    return g > 0 ? g : 0;
}

typedef struct {
    double own, blas, peak; /* GFLOP/s; peak = the higher */
} matmul_peak;

static matmul_peak measure_matmul_peak(int threads) {
    matmul_peak p = {own_sgemm_gflops(), blas_sgemm_gflops_child(threads), 0};
    p.peak = LC_MAX(p.own, p.blas);
    return p;
}

/* Bytes of weights one token reads: every matrix but the embedding tables, with the MoE
 * counted at `ffn_slots` experts per layer. Also the matching FLOPs (2 per weight). */
static void active_bytes(const lc_model *m, double ffn_slots, double *bytes, double *flops) {
    const lc_config *c = &m->cfg;
    int64_t n = lc_model_tensor_specs(c, NULL, NULL);
    lc_tensor_spec *sp = calloc((size_t)n, sizeof *sp);
    *bytes = *flops = 0;
    if (!sp) return;
    lc_model_tensor_specs(c, (lc_model *)m, sp);
    for (int64_t i = 0; i < n; i++) {
        if (!sp[i].mat || strstr(sp[i].name, "embed_tokens") || !strncmp(sp[i].name, "model.mtp.", 10)) continue;
        double w = (double)sp[i].rows * (double)sp[i].cols, b = w * lc_dtype_weight_bytes(sp[i].mat->dtype);
        if (strstr(sp[i].name, ".experts.")) { /* per expert; scaled below */
            b *= ffn_slots / (double)c->n_routed_experts;
            w *= ffn_slots / (double)c->n_routed_experts;
        }
        *bytes += b;
        *flops += 2 * w;
    }
    if (c->tie_word_embeddings) {
        *bytes += (double)c->vocab_size * c->hidden_size * lc_dtype_weight_bytes(m->lm_head.dtype);
        *flops += 2.0 * (double)c->vocab_size * c->hidden_size;
    }
    free(sp);
}

/* FLOPs per token of a T-token prompt from position 0, as much as the forward pass must do:
 * 2 per weight with the experts at `ffn_slots` per layer (the prompt's own routing), lm_head
 * once for the whole prompt (only the last token's logits are computed), and the causal
 * attention itself (token t: t + 1 scores of the q.k width and t + 1 value rows per head). */
static double prefill_flops(const lc_model *m, double ffn_slots, int64_t T) {
    const lc_config *c = &m->cfg;
    double bytes, flops, lm = 2.0 * (double)c->vocab_size * c->hidden_size;
    active_bytes(m, ffn_slots, &bytes, &flops);
    const double dq = (double)(c->qk_nope_head_dim + c->qk_rope_head_dim), dv = (double)c->v_head_dim;
    const double attn = 2.0 * c->num_layers * c->num_attention_heads * (dq + dv) * ((double)T + 1) / 2 * 2; /* 2 sublayers */
    return flops - lm + lm / (double)T + attn;
}

/* Share of the forward pass's wall time per component, as measured by lc_profile. */
static void print_split(const char *what, const double *sec) {
    double total = 0;
    for (int p = 0; p < LC_PROF_COUNT; p++) total += sec[p];
    printf("  %-8s time:", what);
    for (int p = 0; p < LC_PROF_COUNT; p++) printf(" %s %.1f%%", lc_profile_name((lc_prof_part)p), total > 0 ? 100 * sec[p] / total : 0);
    printf("\n");
}

static void print_split_json(const char *key, const double *sec) {
    double total = 0;
    for (int p = 0; p < LC_PROF_COUNT; p++) total += sec[p];
    printf(", \"%s\": {", key);
    for (int p = 0; p < LC_PROF_COUNT; p++)
        printf("%s\"%s\": %.4f", p ? ", " : "", lc_profile_name((lc_prof_part)p), total > 0 ? sec[p] / total : 0);
    printf("}");
}

/* From a fresh session: an 8-token prompt, then n_decode single-token steps (tok[8 + i], or the
 * greedy choice), profiled; *sec: the steps' time, *slots: FFN experts per layer per token. */
static lc_status decode_pass(lc_session *se, const int32_t *tok, int n_decode, int greedy, float *logits, double *sec,
                             double *slots, double split[LC_PROF_COUNT]) {
    const lc_config *c = &se->m->cfg;
    lc_session_reset(se);
    lc_forward_out fo = {.logits = logits, .logits_last_only = 1};
    lc_status s = lc_forward(se, tok, 8, &fo);
    *sec = *slots = 0;
    lc_profile_enable(1);
    for (int i = 0; i < n_decode && !s; i++) {
        int32_t next = greedy ? 0 : tok[8 + i];
        for (int64_t v = 1; greedy && v < c->vocab_size; v++)
            if (logits[v] > logits[next]) next = (int32_t)v;
        int64_t n_ffn = 0;
        lc_forward_out f1 = {.logits = logits, .logits_last_only = 1, .n_ffn_experts = &n_ffn};
        double t0 = lc_time_sec();
        s = lc_forward(se, &next, 1, &f1);
        *sec += lc_time_sec() - t0;
        *slots += (double)n_ffn / (double)c->num_layers / n_decode;
    }
    lc_profile_read(split);
    lc_profile_enable(0);
    return s;
}

/* The index of the median of v[0..n) (n <= 64). */
static int median_index(const double *v, int n) {
    int o[64];
    for (int i = 0; i < n; i++) { /* insertion sort of indices */
        o[i] = i;
        for (int j = i; j > 0 && v[o[j - 1]] > v[o[j]]; j--) {
            int q = o[j];
            o[j] = o[j - 1];
            o[j - 1] = q;
        }
    }
    return o[n / 2];
}

/* Zero-computation experts: forces z of the K routed slots of every token onto identity
 * experts (bias +1e4 on z identity experts, -1e4 on the rest: the router still picks the FFN
 * experts by score) and times decoding. At decode the MoE branch shares its parallel phases
 * with the first dense FFN, so the MoE time of a point is measured as the time of the MoE and
 * dense-FFN steps less that of the last point, z = K (no FFN expert at all: the dense FFNs
 * alone). Expected: MoE time ~ (K - z) / K. */
static lc_status sweep_zero_experts(lc_model *m, lc_session *se, float *logits, const int32_t *tok, int n_decode, int json) {
    const lc_config *c = &m->cfg;
    const int64_t N = c->n_routed_experts, Z = c->zero_expert_num, K = c->moe_topk, zmax = LC_MIN(K, Z);
    if (Z == 0) return lc_error(LC_ERR_ARG, "bench --zero-sweep: this model has no zero-computation experts");
    float *saved = malloc((size_t)(c->num_layers * Z) * sizeof *saved);
    double *step = malloc((size_t)(2 * (zmax + 1)) * sizeof *step), *slots = step ? step + zmax + 1 : NULL;
    if (!saved || !step) {
        free(saved);
        free(step);
        return LC_ERR_NOMEM;
    }
    for (int64_t L = 0; L < c->num_layers; L++)
        memcpy(saved + L * Z, m->layers[L].e_score_correction_bias + N, (size_t)Z * sizeof *saved);
    lc_status s = LC_OK;
    for (int64_t z = -1; z <= zmax && !s; z++) { /* z = -1: an untimed pass at z = 0 (warm-up) */
        for (int64_t L = 0; L < c->num_layers; L++) {
            float *b = (float *)(uintptr_t)m->layers[L].e_score_correction_bias + N; /* the model's own arena */
            for (int64_t j = 0; j < Z; j++) b[j] = j < z ? 1e4f : -1e4f; /* z = -1 sets all to -1e4, as z = 0 */
        }
        double sec, sl, part[LC_PROF_COUNT];
        s = decode_pass(se, tok, n_decode, 0, logits, &sec, &sl, part);
        if (z < 0) continue;
        step[z] = (part[LC_PROF_EXPERTS] + part[LC_PROF_DENSE_FFN]) / n_decode;
        slots[z] = sl;
    }
    if (!s) {
        if (json) printf(", \"zero_expert_sweep\": [");
        else printf("zero-computation experts (decode, %d tokens per point): z of K=%lld slots forced to identity; MoE time "
                    "= MoE + dense FFN steps less those at z = K\n", n_decode, (long long)K);
        const double base = step[0] - step[zmax];
        for (int64_t z = 0; z <= zmax; z++) {
            const double moe = step[z] - step[zmax], f = (double)z / (double)K, ratio = base > 0 ? moe / base : 0;
            if (json)
                printf("%s{\"zero_fraction\": %.4f, \"ffn_experts_per_token\": %.3f, \"moe_ms_per_token\": %.4f, "
                       "\"moe_time_ratio\": %.4f}", z == 0 ? "" : ", ", f, slots[z], moe * 1e3, ratio);
            else
                printf("  f = %.3f: %.2f FFN experts/layer, MoE %.3f ms/token = %.3f of f=0 (ideal %.3f)\n", f, slots[z],
                       moe * 1e3, ratio, 1 - f);
        }
        if (json) printf("]}\n");
    }
    for (int64_t L = 0; L < c->num_layers; L++)
        memcpy((float *)(uintptr_t)m->layers[L].e_score_correction_bias + N, saved + L * Z, (size_t)Z * sizeof *saved);
    free(saved);
    free(step);
    return s;
}

int cmd_bench(int argc, char **argv) {
    const char *dir = NULL, *preset = "medium", *dtype = "bf16";
    int json = 0, n_decode = 32, n_prefill = 512, zero_sweep = 0, repeat = 3, use_mmap = 0, blas_peak = 0;
    double bw_gib = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: longcat bench [MODEL_DIR] [--random PRESET (medium)] [--dtype bf16|f32|f16|fp8] [--decode N (32)]\n"
                   "                     [--prefill N (512)] [--repeat N (3)] [--bw-gib X (1)] [--threads N] [--zero-sweep] [--json]\n"
                   "--zero-sweep: decode MoE time when z of the K routed slots are forced to identity experts.\n"
                   "--blas-peak: only print OpenBLAS's own sgemm GFLOP/s (2048^3, these threads); bench runs itself so,\n"
                   "with OPENBLAS_CORETYPE cleared, for the matmul peak it divides prefill by.\n"
                   "The weights are copied into RAM first (as --no-mmap does elsewhere) when they take at most half of\n"
                   "it; --mmap times them mapped.\n"
                   "Without MODEL_DIR a random model of PRESET is written once to build/bench-PRESET-DTYPE.\n");
            return 0;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--zero-sweep")) zero_sweep = 1;
        else if (!strcmp(a, "--mmap")) use_mmap = 1;
        else if (!strcmp(a, "--blas-peak")) blas_peak = 1;
        else if (a[0] == '-') {
            if (!(v = cli_value(argc, argv, &i))) return 1;
            if (!strcmp(a, "--random")) preset = v;
            else if (!strcmp(a, "--dtype")) dtype = v;
            else if (!strcmp(a, "--decode")) n_decode = atoi(v);
            else if (!strcmp(a, "--prefill")) n_prefill = atoi(v);
            else if (!strcmp(a, "--repeat")) repeat = atoi(v);
            else if (!strcmp(a, "--bw-gib")) bw_gib = atof(v);
            else if (!strcmp(a, "--threads")) cli_set_threads(atoi(v));
            else {
                fprintf(stderr, "longcat bench: unknown option %s\n", a);
                return 1;
            }
        } else dir = a;
    }
    if (n_decode < 1 || n_prefill < 1 || repeat < 1) {
        fprintf(stderr, "longcat bench: --decode, --prefill and --repeat must be >= 1\n");
        return 1;
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (blas_peak) { /* the child of blas_sgemm_gflops_child: OpenBLAS's sgemm alone */
#ifdef LC_HAVE_BLAS
        printf("%.3f\n", lc_blas_sgemm_gflops(PEAK_N, threads));
        return 0;
#else
        return 1;
#endif
    }
    char synth[256];
    lc_status s = LC_OK;
    if (!dir) {
        snprintf(synth, sizeof synth, "build/bench-%s-%s", preset, dtype);
        dir = synth;
        char *cfg = lc_path_join(synth, "config.json");
        if (cfg && !lc_file_exists(cfg)) {
            lc_config c;
            lc_init_options o = {.seed = 1, .dtype = !strcmp(dtype, "f32") ? LC_DT_F32 : !strcmp(dtype, "f16") ? LC_DT_F16
                                                                    : !strcmp(dtype, "fp8") ? LC_DT_F8_E4M3 : LC_DT_BF16};
            s = lc_config_preset(&c, preset);
            if (!s && !json) fprintf(stderr, "bench: writing a random %s model (%s) to %s once\n", preset, dtype, synth);
            if (!s) s = lc_model_init_write(&c, &o, synth);
        }
        free(cfg);
        if (s) return cli_fail(s);
    }
    double bw = lc_measure_read_bandwidth((size_t)(bw_gib * (1 << 30))), peak = lc_measure_fma_peak();
    matmul_peak mm = measure_matmul_peak(threads);
    lc_model *m = NULL;
    lc_session *se = NULL;
    s = lc_model_load(&m, dir);
    if (!s && !use_mmap) { /* mapped files are paged in and out on some machines (this one): copy when it fits */
        double bytes = 0, ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
        for (int f = 0; f < m->st.n_files; f++) bytes += (double)m->st.files[f].size;
        if (ram > 0 && bytes > 0.5 * ram) use_mmap = 1; /* larger than half the RAM: time it mapped */
        else s = lc_model_make_resident(m);
    }
    if (s) {
        lc_model_free(m);
        return cli_fail(s);
    }
    const lc_config *c = &m->cfg;
    volatile uint8_t sink = 0; /* read every mapped byte once: weights resident before timing */
    for (int f = 0; f < m->st.n_files; f++)
        for (size_t i = 0; i < m->st.files[f].size; i += 4096) sink ^= m->st.files[f].data[i];
    (void)sink;
    int64_t ctx = LC_MIN(c->max_position_embeddings, (int64_t)n_prefill + n_decode + 16);
    s = lc_session_new(&se, m, ctx);
    float *logits = s ? NULL : malloc((size_t)c->vocab_size * sizeof *logits);
    int32_t *tok = s ? NULL : malloc((size_t)(n_prefill + 8) * sizeof *tok);
    if (!s && (!logits || !tok)) s = LC_ERR_NOMEM;
    for (int i = 0; tok && i < n_prefill + 8; i++) tok[i] = (int32_t)((i * 7919 + 17) % c->vocab_size);
    /* decode: 8-token prompt, then one token at a time (greedy); prefill: n_prefill tokens in one
     * call. `repeat` passes from a fresh session, each decode right after its own bandwidth
     * measurement (the machine may be shared: what it gives drifts within seconds), so each
     * pass has its own ratio; the pass with the median ratio is reported, for each of the two. */
    enum { MAX_PASSES = 64 };
    struct pass_fig {
        double t, slots, bw, per_token, split[LC_PROF_COUNT]; /* per_token: bytes (decode), FLOPs (prefill) */
        double peak; /* prefill: the FMA peak around this pass */
        matmul_peak mm; /* prefill: the matmul peak around this pass */
    } dec_p[MAX_PASSES] = {{0}}, pre_p[MAX_PASSES] = {{0}};
    double dec_ratio_of[MAX_PASSES] = {0}, pre_ratio_of[MAX_PASSES] = {0}, fma_ratio_of[MAX_PASSES] = {0};
    const int passes = LC_MIN(repeat, MAX_PASSES);
    if (!s) { /* one untimed prefill first (as llama-bench's warm-up run): the activation buffers'
                 first-touch page faults (~4% of a cold 512-token prefill here) are not timed */
        lc_forward_out fo = {.logits = logits, .logits_last_only = 1};
        s = lc_forward(se, tok, n_prefill, &fo);
    }
    double peak_before = peak; /* the FMA peak measured last before the coming prefill pass */
    matmul_peak mm_before = mm; /* and the matmul peak */
    for (int pass = 0; pass < passes && !s; pass++) {
        struct pass_fig *d = &dec_p[pass], *p = &pre_p[pass];
        *d = (struct pass_fig){.bw = pass ? lc_measure_read_bandwidth((size_t)(bw_gib * (1 << 30))) : bw};
        s = decode_pass(se, tok, n_decode, 1, logits, &d->t, &d->slots, d->split);
        double flops;
        active_bytes(m, d->slots, &d->per_token, &flops);
        dec_ratio_of[pass] = d->bw > 0 && d->t > 0 ? n_decode / d->t * d->per_token / (d->bw * 1e9) : 0;
        lc_session_reset(se);
        lc_profile_enable(1);
        int64_t n_ffn = 0;
        lc_forward_out fo = {.logits = logits, .logits_last_only = 1, .n_ffn_experts = &n_ffn};
        double t0 = lc_time_sec();
        if (!s) s = lc_forward(se, tok, n_prefill, &fo);
        p->t = lc_time_sec() - t0;
        lc_profile_read(p->split);
        lc_profile_enable(0);
        p->slots = (double)n_ffn / (double)c->num_layers / n_prefill;
        p->per_token = prefill_flops(m, p->slots, n_prefill);
        /* the peaks are ceilings of the hardware, and a neighbour on a shared machine can only
         * lower a measurement of them (one FMA measurement came out at 264 against 415-446
         * GFLOP/s, and the pass's ratio at 108%): the higher of the measurements just before
         * and just after the pass */
        const double after = lc_measure_fma_peak();
        const matmul_peak mm_after = measure_matmul_peak(threads);
        p->peak = LC_MAX(peak_before, after);
        p->mm = mm_after.peak > mm_before.peak ? mm_after : mm_before;
        peak_before = after;
        mm_before = mm_after;
        const double gflops = p->t > 0 ? n_prefill / p->t * p->per_token / 1e9 : 0;
        pre_ratio_of[pass] = p->mm.peak > 0 ? gflops / p->mm.peak : 0;
        fma_ratio_of[pass] = p->peak > 0 ? gflops / p->peak : 0;
    }
    const int di = median_index(dec_ratio_of, passes), pi = median_index(pre_ratio_of, passes);
    const double *split_dec = dec_p[di].split, *split_pre = pre_p[pi].split, slots = dec_p[di].slots;
    const double dec_ratio = dec_ratio_of[di], pre_ratio = pre_ratio_of[pi], fma_ratio = fma_ratio_of[pi];
    bw = dec_p[di].bw;
    peak = pre_p[pi].peak;
    if (pre_p[pi].mm.peak > 0) mm = pre_p[pi].mm;
    if (!s) {
        const double bytes = dec_p[di].per_token, flops = pre_p[pi].per_token;
        const double dec = n_decode / dec_p[di].t, pre = n_prefill / pre_p[pi].t;
        if (json) {
            printf("{\"model\": \"%s\", \"weights\": \"%s\", \"kernels\": \"%s\", \"blas_core\": \"%s\", \"threads\": %d, \"bandwidth_gb_s\": %.2f, \"fma_peak_gflops\": %.1f, "
                   "\"matmul_gflops\": %.1f, \"blas_sgemm_gflops\": %.1f, \"own_sgemm_gflops\": %.1f, \"bytes_per_token\": %.0f, \"ffn_experts_per_token\": %.2f, "
                   "\"decode_tok_s\": %.3f, \"decode_roofline_ratio\": %.4f, \"prefill_tokens\": %d, \"prefill_tok_s\": %.3f, \"prefill_gflop_per_token\": %.4f, "
                   "\"prefill_ffn_experts_per_token\": %.2f, \"prefill_peak_ratio\": %.4f, \"prefill_fma_ratio\": %.4f",
                   dir, use_mmap ? "mmap" : "resident", lc_k.name, blas_core(), threads, bw, peak, mm.peak, mm.blas, mm.own, bytes, slots,
                   dec, dec_ratio, n_prefill, pre, flops / 1e9, pre_p[pi].slots, pre_ratio, fma_ratio);
            print_split_json("decode_split", split_dec);
            print_split_json("prefill_split", split_pre);
            if (!zero_sweep) printf("}\n"); /* else the sweep adds its array and closes */
        } else {
            printf("model %s, kernels %s, OpenBLAS %s, %d threads; weights %s, read once before timing\n", dir, lc_k.name,
                   blas_core(), threads, use_mmap ? "memory-mapped" : "copied into RAM (resident, huge pages)");
            printf("machine   read bandwidth %.1f GB/s; FP32 FMA peak %.1f GFLOP/s; matmul peak %.1f GFLOP/s (sgemm %d^3: OpenBLAS "
                   "%.1f, own %.1f)\n", bw, peak, mm.peak, PEAK_N, mm.blas, mm.own);
            printf("decode    %.2f tok/s, %.1f MB of weights per token (%.2f FFN experts/layer) -> %.1f GB/s = %.1f%% of bandwidth\n",
                   dec, bytes / 1e6, slots, dec * bytes / 1e9, 100 * dec_ratio);
            printf("prefill   %d tokens: %.1f tok/s, %.3f GFLOP/token (%.2f FFN experts/layer) -> %.1f GFLOP/s = %.1f%% of the matmul "
                   "peak (%.1f%% of the FMA peak)\n", n_prefill, pre, flops / 1e9, pre_p[pi].slots, pre * flops / 1e9, 100 * pre_ratio,
                   100 * fma_ratio);
            print_split("decode", split_dec);
            print_split("prefill", split_pre);
        }
    }
    if (!s && zero_sweep) s = sweep_zero_experts(m, se, logits, tok, n_decode, json);
    free(logits);
    free(tok);
    lc_session_free(se);
    lc_model_free(m);
    return s ? cli_fail(s) : 0;
}

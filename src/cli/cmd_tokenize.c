/* cmd_tokenize.c — `longcat tokenize`: text -> ids (and pieces) as JSON, or ids -> text with
 * --decode. MODEL_DIR is any folder with tokenizer.json (a checkpoint or a tokenizer). */
#include "cli.h"
#include "../tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tok_usage(FILE *f) {
    fprintf(f, "usage: longcat tokenize MODEL_DIR \"text\" [--pieces] [--no-special]\n"
               "       longcat tokenize MODEL_DIR --file FILE [--pieces] [--no-special]\n"
               "       longcat tokenize MODEL_DIR --decode 1,2,3 [--skip-special]\n"
               "Prints {\"ids\": [...]} (with --pieces also the vocabulary strings); --no-special skips the\n"
               "post-processor's special tokens (HF add_special_tokens=False).\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *text = NULL, *file = NULL, *decode = NULL;
    int pieces = 0, special = 1, skip = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tok_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--pieces")) pieces = 1;
        else if (!strcmp(a, "--no-special")) special = 0;
        else if (!strcmp(a, "--skip-special")) skip = 1;
        else if (!strcmp(a, "--file") || !strcmp(a, "--decode")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v) return 1;
            if (!strcmp(a, "--file")) file = v;
            else decode = v;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "longcat tokenize: unknown option %s\n", a);
            return 1;
        } else if (!dir) dir = a;
        else text = a;
    }
    if (!dir || (!text && !file && !decode)) {
        tok_usage(stderr);
        return 1;
    }
    lc_tokenizer *t;
    lc_status s = lc_tokenizer_load(&t, dir);
    if (s) return cli_fail(s);
    if (decode) {
        int32_t *ids;
        int64_t n;
        char *out = NULL;
        size_t len;
        s = cli_parse_tokens(decode, &ids, &n);
        if (!s) s = lc_tokenizer_decode(t, ids, n, skip ? LC_DECODE_SKIP_SPECIAL : 0, &out, &len);
        if (!s) {
            fwrite(out, 1, len, stdout);
            putchar('\n');
        }
        free(out);
        lc_free(ids);
        lc_tokenizer_free(t);
        return s ? cli_fail(s) : 0;
    }
    char *buf = NULL;
    size_t len = 0;
    if (file) s = lc_read_file(file, &buf, &len);
    else {
        buf = lc_strdup(text);
        len = buf ? strlen(buf) : 0;
    }
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!s) s = lc_tokenizer_encode(t, buf, len, special, &ids, &n);
    if (!s) {
        cJSON *o = cJSON_CreateObject(), *ja = cJSON_AddArrayToObject(o, "ids");
        for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(ja, cJSON_CreateNumber(ids[i]));
        if (pieces) {
            cJSON *jp = cJSON_AddArrayToObject(o, "pieces");
            for (int64_t i = 0; i < n; i++) {
                const char *p = lc_tokenizer_piece(t, ids[i]);
                cJSON_AddItemToArray(jp, cJSON_CreateString(p ? p : ""));
            }
        }
        char *js = cJSON_PrintUnformatted(o);
        if (js) puts(js);
        free(js);
        cJSON_Delete(o);
    }
    free(ids);
    free(buf);
    lc_tokenizer_free(t);
    return s ? cli_fail(s) : 0;
}

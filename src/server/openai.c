/* openai.c — request validation and response JSON of the OpenAI API (see openai.h). */
#include "openai.h"

#include "../tokenizer/chat.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_tool_open[] = "<longcat_tool_call>";

int oai_fail(oai_error *err, int status, const char *type, const char *code, const char *param, const char *fmt, ...) {
    err->status = status;
    snprintf(err->type, sizeof err->type, "%s", type);
    snprintf(err->code, sizeof err->code, "%s", code ? code : "");
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return status;
}

#define BAD(param, ...) oai_fail(err, 400, "invalid_request_error", NULL, param, __VA_ARGS__)

char *oai_error_json(const oai_error *err) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", err->message);
    cJSON_AddStringToObject(e, "type", err->type);
    if (err->param[0]) cJSON_AddStringToObject(e, "param", err->param);
    else cJSON_AddNullToObject(e, "param");
    if (err->code[0]) cJSON_AddStringToObject(e, "code", err->code);
    else cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

size_t oai_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int k = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
        if (k < 0 || c > 0xF4 || c == 0xC0 || c == 0xC1 || i + (size_t)k >= n) return i;
        uint32_t cp = c & (0x3F >> k);
        for (int j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += (size_t)k + 1;
    }
    return n;
}

/* ---- parsing ---- */

static int get_number(const cJSON *o, const char *key, double lo, double hi, double *out, oai_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return BAD(key, "'%s' must be a number", key);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return BAD(key, "'%s' must be between %g and %g (got %g)", key, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return 0;
}

static int get_int(const cJSON *o, const char *key, double lo, double hi, int64_t *out, oai_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) return BAD(key, "'%s' must be an integer", key);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return BAD(key, "'%s' must be between %.0f and %.0f (got %.0f)", key, lo, hi, v->valuedouble);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *key, int *out, oai_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return BAD(key, "'%s' must be a boolean", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A message's content as one string: a string, null, or an array of {"type": "text"} parts. */
static int content_text(const cJSON *c, const char *path, char **out, oai_error *err) {
    *out = NULL;
    if (!c || cJSON_IsNull(c)) return 0;
    if (cJSON_IsString(c)) {
        *out = lc_strdup(c->valuestring);
        return *out ? 0 : oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!cJSON_IsArray(c)) return BAD(path, "'%s' must be a string, null or an array of text parts", path);
    size_t len = 0;
    const cJSON *part;
    int i = 0;
    cJSON_ArrayForEach(part, c) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text") != 0)
            return BAD(path, "%s[%d]: only parts of type 'text' are supported", path, i);
        if (!cJSON_IsString(tx)) return BAD(path, "%s[%d].text must be a string", path, i);
        len += strlen(tx->valuestring);
        i++;
    }
    char *s = malloc(len + 1);
    if (!s) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    s[0] = 0;
    cJSON_ArrayForEach(part, c) strcat(s, cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring);
    *out = s;
    return 0;
}

/* messages -> the plain array lc_chat_render takes (roles checked there too). */
static int build_messages(const cJSON *msgs, cJSON *out, oai_error *err) {
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) return BAD("messages", "'messages' must be a non-empty array");
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        char path[64];
        snprintf(path, sizeof path, "messages[%d]", i);
        if (!cJSON_IsObject(m)) return BAD(path, "'%s' must be an object", path);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) return BAD(path, "'%s.role' must be a string", path);
        const char *rs = role->valuestring;
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool"))
            return BAD(path, "'%s.role' must be one of system, developer, user, assistant, tool (got '%s')", path,
                       role->valuestring);
        char cpath[80], *text;
        snprintf(cpath, sizeof cpath, "%s.content", path);
        if (content_text(cJSON_GetObjectItemCaseSensitive(m, "content"), cpath, &text, err)) return err->status;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(out, o);
        cJSON_AddStringToObject(o, "role", rs);
        if (text) cJSON_AddStringToObject(o, "content", text);
        else cJSON_AddNullToObject(o, "content");
        free(text);
        if (!text && strcmp(rs, "assistant") != 0) return BAD(cpath, "'%s' is required for role '%s'", cpath, rs);
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (calls && !cJSON_IsNull(calls)) {
            if (strcmp(rs, "assistant") != 0) return BAD(path, "'%s.tool_calls' is only valid for assistant messages", path);
            if (!cJSON_IsArray(calls)) return BAD(path, "'%s.tool_calls' must be an array", path);
            cJSON *oc = cJSON_AddArrayToObject(o, "tool_calls");
            int j = 0;
            const cJSON *tc;
            cJSON_ArrayForEach(tc, calls) {
                const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
                const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
                if (!cJSON_IsObject(fn) || !cJSON_IsString(name))
                    return BAD(path, "'%s.tool_calls[%d].function.name' must be a string", path, j);
                if (args && !cJSON_IsString(args) && !cJSON_IsObject(args))
                    return BAD(path, "'%s.tool_calls[%d].function.arguments' must be a string", path, j);
                cJSON *c = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(c, "function");
                cJSON_AddStringToObject(f, "name", name->valuestring);
                if (args) cJSON_AddItemToObject(f, "arguments", cJSON_Duplicate(args, 1));
                else cJSON_AddStringToObject(f, "arguments", "{}");
                cJSON_AddItemToArray(oc, c);
                j++;
            }
        }
        i++;
    }
    return 0;
}

static int check_tools(const cJSON *tools, oai_error *err) {
    if (!cJSON_IsArray(tools)) return BAD("tools", "'tools' must be an array");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function") != 0)
            return BAD("tools", "'tools[%d].type' must be 'function'", i);
        if (!cJSON_IsObject(fn) || !cJSON_IsString(name) || !name->valuestring[0])
            return BAD("tools", "'tools[%d].function.name' must be a non-empty string", i);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(fn, "description");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        if (d && !cJSON_IsString(d) && !cJSON_IsNull(d)) return BAD("tools", "'tools[%d].function.description' must be a string", i);
        if (p && !cJSON_IsObject(p) && !cJSON_IsNull(p)) return BAD("tools", "'tools[%d].function.parameters' must be an object", i);
        i++;
    }
    return 0;
}

static int parse_stop(const cJSON *v, oai_request *r, oai_error *err) {
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        if (v->valuestring[0]) r->stop[r->n_stop++] = lc_strdup(v->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(v)) return BAD("stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(v) > OAI_MAX_STOP) return BAD("stop", "'stop' holds at most %d strings", OAI_MAX_STOP);
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s)) return BAD("stop", "'stop' must be a string or an array of strings");
        if (s->valuestring[0]) r->stop[r->n_stop++] = lc_strdup(s->valuestring);
    }
    return 0;
}

/* A completion prompt: a string, [string], [ids] or [[ids]] (one prompt: n = 1). */
static int parse_prompt(const cJSON *p, oai_request *r, oai_error *err) {
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && !cJSON_IsNumber(cJSON_GetArrayItem(p, 0)))
        p = cJSON_GetArrayItem(p, 0);
    if (cJSON_IsString(p)) {
        r->prompt = lc_strdup(p->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0)
        return BAD("prompt", "'prompt' must be a string, or a non-empty array of token ids");
    int n = cJSON_GetArraySize(p), i = 0;
    r->prompt_ids = malloc((size_t)n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    const cJSON *v;
    cJSON_ArrayForEach(v, p) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > 2147483647.0) /* the model's vocabulary is checked where it is known */
            return BAD("prompt", "'prompt[%d]' must be a token id (a non-negative integer)", i);
        r->prompt_ids[i++] = (int32_t)v->valuedouble;
    }
    r->n_prompt_ids = n;
    return 0;
}

int oai_parse(oai_request *r, const char *body, size_t len, int chat, const char *model_id, oai_error *err) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->sampling = lc_sampler_defaults();
    r->sampling.temperature = 1.0f; /* OpenAI's defaults */
    r->sampling.top_p = 1.0f;
    r->sampling.seed = (uint64_t)(lc_time_sec() * 1e6);
    size_t bad = oai_utf8_valid_prefix(body, len);
    if (bad < len) return BAD(NULL, "the request body is not valid UTF-8 (byte %zu)", bad);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!j) {
        size_t off = end ? (size_t)(end - body) : 0;
        return BAD(NULL, "the request body is not valid JSON (near byte %zu)", off);
    }
    int rc = 0;
    double num = 0;
    int64_t iv = 0;
    if (!cJSON_IsObject(j)) {
        rc = BAD(NULL, "the request body must be a JSON object");
        goto done;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (!cJSON_IsString(model)) {
        rc = BAD("model", "'model' is required and must be a string");
        goto done;
    }
    if (strcmp(model->valuestring, model_id) != 0) {
        rc = oai_fail(err, 404, "invalid_request_error", "model_not_found", "model",
                      "The model '%.200s' does not exist; this server serves '%.200s'", model->valuestring, model_id);
        goto done;
    }
    if ((rc = get_bool(j, "stream", &r->stream, err))) goto done;
    if ((rc = get_bool(j, "ignore_eos", &r->ignore_eos, err))) goto done;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) {
            rc = BAD("stream_options", "'stream_options' must be an object");
            goto done;
        }
        if (!r->stream) {
            rc = BAD("stream_options", "'stream_options' is only allowed when 'stream' is true");
            goto done;
        }
        if ((rc = get_bool(so, "include_usage", &r->include_usage, err))) goto done;
    }
    iv = 0;
    if ((rc = get_int(j, "max_tokens", 1, 1e9, &iv, err))) goto done;
    if ((rc = get_int(j, "max_completion_tokens", 1, 1e9, &iv, err))) goto done;
    r->max_tokens = iv;
    iv = 1;
    if ((rc = get_int(j, "n", 1, 128, &iv, err))) goto done;
    if (iv != 1) {
        rc = BAD("n", "only n = 1 is supported");
        goto done;
    }
    iv = 1;
    if ((rc = get_int(j, "best_of", 1, 128, &iv, err))) goto done;
    if (iv != 1) {
        rc = BAD("best_of", "only best_of = 1 is supported");
        goto done;
    }
    num = r->sampling.temperature;
    if ((rc = get_number(j, "temperature", 0, 2, &num, err))) goto done;
    r->sampling.temperature = (float)num;
    num = 1;
    if ((rc = get_number(j, "top_p", 0, 1, &num, err))) goto done;
    if (num <= 0) r->sampling.temperature = 0; /* nothing but the most likely token */
    else r->sampling.top_p = (float)num;
    num = 0;
    if ((rc = get_number(j, "presence_penalty", -2, 2, &num, err))) goto done;
    r->sampling.presence_penalty = (float)num;
    num = 0;
    if ((rc = get_number(j, "frequency_penalty", -2, 2, &num, err))) goto done;
    r->sampling.frequency_penalty = (float)num;
    num = 1;
    if ((rc = get_number(j, "repetition_penalty", 0.01, 10, &num, err))) goto done;
    r->sampling.repetition_penalty = (float)num;
    num = 0;
    if ((rc = get_number(j, "min_p", 0, 1, &num, err))) goto done;
    r->sampling.min_p = (float)num;
    iv = 0;
    if ((rc = get_int(j, "top_k", 0, 1e9, &iv, err))) goto done;
    r->sampling.top_k = (int32_t)iv;
    iv = (int64_t)(r->sampling.seed & 0x7fffffffffffull);
    if ((rc = get_int(j, "seed", -9.2e18, 9.2e18, &iv, err))) goto done;
    r->sampling.seed = (uint64_t)iv;
    if ((rc = parse_stop(cJSON_GetObjectItemCaseSensitive(j, "stop"), r, err))) goto done;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(j, "logprobs");
    if (lp && (cJSON_IsTrue(lp) || (cJSON_IsNumber(lp) && lp->valuedouble > 0))) {
        rc = oai_fail(err, 400, "invalid_request_error", "unsupported_parameter", "logprobs", "'logprobs' is not supported");
        goto done;
    }
    if (chat) {
        cJSON *msgs = cJSON_CreateArray();
        rc = build_messages(cJSON_GetObjectItemCaseSensitive(j, "messages"), msgs, err);
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(j, "tools");
        const cJSON *choice = cJSON_GetObjectItemCaseSensitive(j, "tool_choice");
        int use_tools = tools && !cJSON_IsNull(tools);
        if (!rc && use_tools) rc = check_tools(tools, err);
        if (!rc && use_tools && cJSON_GetArraySize(tools) == 0) use_tools = 0;
        if (!rc && choice && !cJSON_IsNull(choice)) {
            if (cJSON_IsString(choice)) {
                if (!strcmp(choice->valuestring, "none")) use_tools = 0;
                else if (strcmp(choice->valuestring, "auto") && strcmp(choice->valuestring, "required"))
                    rc = BAD("tool_choice", "'tool_choice' must be 'none', 'auto', 'required' or a function");
            } else if (!cJSON_IsObject(choice)) rc = BAD("tool_choice", "'tool_choice' must be a string or an object");
            if (!rc && choice && !cJSON_IsString(choice) && !use_tools)
                rc = BAD("tool_choice", "'tool_choice' names a function but no 'tools' were given");
        }
        if (!rc) {
            lc_status st = lc_chat_render(msgs, use_tools ? tools : NULL, &r->prompt);
            if (st) rc = BAD("messages", "%s", lc_last_error());
        }
        r->tools = use_tools;
        cJSON_Delete(msgs);
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
        if (!p) rc = BAD("prompt", "'prompt' is required");
        else rc = parse_prompt(p, r, err);
        int echo = 0;
        if (!rc) rc = get_bool(j, "echo", &echo, err);
        if (!rc && echo) rc = oai_fail(err, 400, "invalid_request_error", "unsupported_parameter", "echo", "'echo' is not supported");
    }
done:
    cJSON_Delete(j);
    return rc;
}

void oai_request_free(oai_request *r) {
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* ---- responses ---- */

const char *oai_finish_reason(lc_stop_reason r) {
    switch (r) {
    case LC_STOP_EOS:
    case LC_STOP_STRING: return "stop";
    case LC_STOP_MAX_TOKENS:
    case LC_STOP_CONTEXT: return "length";
    case LC_STOP_CANCELLED: return "abort";
    }
    return "stop";
}

static cJSON *envelope(const oai_request *r, const char *id, long created, const char *model, int chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", r->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "system_fingerprint", "longcat.c");
    return o;
}

static void add_usage(cJSON *o, int64_t prompt_tokens, int64_t completion_tokens) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt_tokens + completion_tokens));
}

/* Parses tool calls when the request allows them; *content is malloc'd (may be NULL). */
static cJSON *split_tool_calls(const oai_request *r, const char *text, char **content) {
    cJSON *calls = NULL;
    *content = NULL;
    if (r->tools && !lc_chat_parse_tool_calls(text, content, &calls)) return calls;
    *content = lc_strdup(text);
    return NULL;
}

char *oai_response_json(const oai_request *r, const char *id, long created, const char *model, const char *text,
                        lc_stop_reason stop, int64_t prompt_tokens, int64_t completion_tokens) {
    cJSON *o = envelope(r, id, created, model, 0);
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    const char *finish = oai_finish_reason(stop);
    if (r->chat) {
        char *content;
        cJSON *calls = split_tool_calls(r, text, &content);
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        if (content) cJSON_AddStringToObject(m, "content", content);
        else cJSON_AddNullToObject(m, "content");
        if (calls) {
            cJSON_AddItemToObject(m, "tool_calls", calls);
            finish = "tool_calls";
        }
        free(content);
    } else cJSON_AddStringToObject(c, "text", text);
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish);
    add_usage(o, prompt_tokens, completion_tokens);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

size_t oai_stream_next(const oai_request *r, const char *text, size_t len, size_t *sent, size_t *from) {
    *from = *sent;
    if (!r->chat || !r->tools) {
        *sent = len;
        return len - *from;
    }
    size_t end = len;
    const char *tag = strstr(text, k_tool_open);
    if (tag && (size_t)(tag - text) < end) end = (size_t)(tag - text);
    else /* a suffix that may still grow into the tag */
        for (size_t k = LC_MIN(len, sizeof k_tool_open - 2); k > 0; k--)
            if (!memcmp(text + len - k, k_tool_open, k)) {
                end = len - k;
                break;
            }
    while (end > *sent && is_ws(text[end - 1])) end--; /* may precede a call, or be trimmed at the end */
    if (*sent == 0)                                   /* leading space is trimmed from content */
        while (*from < end && is_ws(text[*from])) (*from)++;
    if (end <= *from) return 0;
    *sent = end;
    return end - *from;
}

static char *sse(cJSON *o) {
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!js) return NULL;
    size_t n = strlen(js);
    char *s = malloc(n + 9);
    if (s) {
        memcpy(s, "data: ", 6);
        memcpy(s + 6, js, n);
        memcpy(s + 6 + n, "\n\n", 3);
    }
    free(js);
    return s;
}

static cJSON *chunk_choice(cJSON *o) {
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    return c;
}

char *oai_chunk(const oai_request *r, const char *id, long created, const char *model, const char *content,
                size_t content_len, int role) {
    cJSON *o = envelope(r, id, created, model, 1), *c = chunk_choice(o);
    char *piece = content ? malloc(content_len + 1) : NULL;
    if (piece) {
        memcpy(piece, content, content_len);
        piece[content_len] = 0;
    }
    if (r->chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        cJSON_AddStringToObject(d, "content", piece ? piece : "");
    } else cJSON_AddStringToObject(c, "text", piece ? piece : "");
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddNullToObject(c, "finish_reason");
    free(piece);
    return sse(o);
}

/* Appends s (consumed) to the growing buffer *b. */
static void cat(char **b, size_t *n, char *s) {
    if (!s) return;
    size_t k = strlen(s);
    char *p = realloc(*b, *n + k + 1);
    if (p) {
        memcpy(p + *n, s, k + 1);
        *b = p;
        *n += k;
    }
    free(s);
}

char *oai_final_chunks(const oai_request *r, const char *id, long created, const char *model, const char *text,
                       size_t sent, lc_stop_reason stop, int64_t prompt_tokens, int64_t completion_tokens) {
    char *out = calloc(1, 1);
    size_t n = 0;
    const char *finish = oai_finish_reason(stop);
    if (r->chat && r->tools) {
        char *content;
        cJSON *calls = split_tool_calls(r, text, &content);
        if (calls) {
            int i = 0;
            cJSON *tc;
            cJSON_ArrayForEach(tc, calls) {
                cJSON *o = envelope(r, id, created, model, 1), *c = chunk_choice(o);
                cJSON *d = cJSON_AddObjectToObject(c, "delta"), *arr = cJSON_AddArrayToObject(d, "tool_calls");
                cJSON *item = cJSON_Duplicate(tc, 1);
                cJSON_AddNumberToObject(item, "index", i++);
                cJSON_AddItemToArray(arr, item);
                cJSON_AddNullToObject(c, "logprobs");
                cJSON_AddNullToObject(c, "finish_reason");
                cat(&out, &n, sse(o));
            }
            finish = "tool_calls";
        } else { /* no calls after all: the held-back rest is content, trimmed at the end */
            size_t end = strlen(text), from = sent;
            while (end > sent && is_ws(text[end - 1])) end--;
            if (from == 0)
                while (from < end && is_ws(text[from])) from++;
            if (end > from) cat(&out, &n, oai_chunk(r, id, created, model, text + from, end - from, 0));
        }
        cJSON_Delete(calls);
        free(content);
    }
    cJSON *o = envelope(r, id, created, model, 1), *c = chunk_choice(o);
    if (r->chat) cJSON_AddObjectToObject(c, "delta");
    else cJSON_AddStringToObject(c, "text", "");
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", finish);
    cat(&out, &n, sse(o));
    if (r->include_usage) {
        cJSON *u = envelope(r, id, created, model, 1);
        cJSON_AddArrayToObject(u, "choices");
        add_usage(u, prompt_tokens, completion_tokens);
        cat(&out, &n, sse(u));
    }
    cat(&out, &n, lc_strdup("data: [DONE]\n\n"));
    return out;
}

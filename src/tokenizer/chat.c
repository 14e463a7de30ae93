/* chat.c — the LongCat chat format rendered natively, its Jinja twin, and tool-call parsing.
 * The format (see docs/CHAT_FORMAT.md): optional tool description + "\n\n## Messages\n",
 * "SYSTEM:{s}", rounds "[Round N] USER:{q} ASSISTANT:{a}</longcat_s>" joined by spaces; tool
 * results are a USER turn of <longcat_tool_response> blocks. */
#include "chat.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n + 1) c *= 2;
        char *p = realloc(b->buf, c);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->buf = p;
        b->cap = c;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)LC_MIN((size_t)n, sizeof tmp - 1));
}

/* ---------------------------------------------------------------- JSON, Python style */

static void json_string(sbuf *b, const char *s) {
    sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default:
            if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
            else sb_put(b, (const char *)p, 1);
        }
    }
    sb_puts(b, "\"");
}

/* JavaScript's Number.prototype.toString: integers plainly, else the shortest round trip. */
static void json_number(sbuf *b, double v) {
    char tmp[64];
    if (!isfinite(v)) {
        sb_puts(b, "null");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e21) {
        snprintf(tmp, sizeof tmp, "%.0f", v);
        sb_puts(b, strcmp(tmp, "-0") ? tmp : "0");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* C writes 1e-07, JavaScript 1e-7 */
    char *e = strchr(tmp, 'e');
    if (e) {
        char sign = e[1];
        char *d = e + 2;
        while (*d == '0' && d[1]) d++;
        char out[64];
        snprintf(out, sizeof out, "%.*se%c%s", (int)(e - tmp), tmp, sign, d);
        sb_puts(b, out);
    } else sb_puts(b, tmp);
}

static void json_value(sbuf *b, const cJSON *v, int indent, int depth) {
    if (!v || cJSON_IsNull(v)) sb_puts(b, "null");
    else if (cJSON_IsTrue(v)) sb_puts(b, "true");
    else if (cJSON_IsFalse(v)) sb_puts(b, "false");
    else if (cJSON_IsNumber(v)) json_number(b, v->valuedouble);
    else if (cJSON_IsString(v)) json_string(b, v->valuestring);
    else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int obj = cJSON_IsObject(v);
        sb_puts(b, obj ? "{" : "[");
        int first = 1;
        for (const cJSON *c = v->child; c; c = c->next) {
            if (!first) sb_puts(b, indent ? "," : ", ");
            if (indent) {
                sb_puts(b, "\n");
                for (int i = 0; i < (depth + 1) * indent; i++) sb_puts(b, " ");
            }
            if (obj) {
                json_string(b, c->string ? c->string : "");
                sb_puts(b, ": ");
            }
            json_value(b, c, indent, depth + 1);
            first = 0;
        }
        if (indent && !first) {
            sb_puts(b, "\n");
            for (int i = 0; i < depth * indent; i++) sb_puts(b, " ");
        }
        sb_puts(b, obj ? "}" : "]");
    } else sb_puts(b, "null");
}

char *lc_json_dumps(const cJSON *v, int indent) {
    sbuf b = {0};
    json_value(&b, v, indent, 0);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf ? b.buf : calloc(1, 1);
}

/* ---------------------------------------------------------------- rendering */

static const char *k_tools_note =
    "**Note**: For each function call, return a json object with function name and arguments within "
    "<longcat_tool_call></longcat_tool_call> XML tags as follows:\n"
    "<longcat_tool_call>\n"
    "{\"name\": <function-name>, \"arguments\": <args-dict>}\n"
    "</longcat_tool_call>\n"
    "When multiple functions need to be called simultaneously, each function call should be wrapped in its own "
    "<longcat_tool_call> tag and placed consecutively. For example:\n"
    "<longcat_tool_call>\n"
    "{\"name\": <function-name>, \"arguments\": <args-dict>}\n"
    "</longcat_tool_call><longcat_tool_call>\n"
    "{\"name\": <function-name>, \"arguments\": <args-dict>}\n"
    "</longcat_tool_call>";

static const char *str_or(const cJSON *o, const char *key, const char *def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : def;
}

static lc_status render_tools(sbuf *b, const cJSON *tools) {
    sb_puts(b, "## Tools\nYou have access to the following tools: \n\n### Tool namespace: function\n\n");
    int i = 0;
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!fn) fn = t;
        const char *name = str_or(fn, "name", NULL);
        if (!name) return lc_error(LC_ERR_ARG, "$.tools[%d].function.name must be a string", i);
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        char *pj = lc_json_dumps(params, 2);
        if (!pj) return LC_ERR_NOMEM;
        sb_printf(b, "#### Tool name: ");
        sb_puts(b, name);
        sb_puts(b, "\n\nDescription: ");
        sb_puts(b, str_or(fn, "description", ""));
        sb_puts(b, "\n\nInputSchema: \n");
        sb_puts(b, pj);
        sb_puts(b, "\n\n");
        free(pj);
    }
    sb_puts(b, k_tools_note);
    sb_puts(b, "\n\n## Messages\n");
    return LC_OK;
}

static lc_status render_tool_call(sbuf *b, const cJSON *tc, int mi, int ti) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    if (!fn) fn = tc;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsString(name)) return lc_error(LC_ERR_ARG, "$.messages[%d].tool_calls[%d].function.name must be a string", mi, ti);
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    char *nj = lc_json_dumps(name, 0), *aj = cJSON_IsString(args) ? NULL : lc_json_dumps(args, 0);
    sb_puts(b, "<longcat_tool_call>{\"name\": ");
    sb_puts(b, nj ? nj : "\"\"");
    sb_puts(b, ", \"arguments\": ");
    sb_puts(b, cJSON_IsString(args) ? args->valuestring : (aj ? aj : "{}")); /* OpenAI sends a JSON string */
    sb_puts(b, "}</longcat_tool_call>");
    free(nj);
    free(aj);
    return LC_OK;
}

lc_status lc_chat_render(const cJSON *messages, const cJSON *tools, char **out) {
    *out = NULL;
    if (!cJSON_IsArray(messages)) return lc_error(LC_ERR_ARG, "$.messages must be an array");
    if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools)) return lc_error(LC_ERR_ARG, "$.tools must be an array");
    sbuf b = {0};
    lc_status s = LC_OK;
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0) s = render_tools(&b, tools);
    int started = 0, round = 0, i = 0, n = cJSON_GetArraySize(messages);
    const cJSON *m = messages->child, *prev = NULL;
    for (; m && !s; prev = m, m = m->next, i++) {
        const char *role = str_or(m, "role", NULL);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!role) {
            s = lc_error(LC_ERR_ARG, "$.messages[%d].role must be a string", i);
            break;
        }
        if (content && !cJSON_IsNull(content) && !cJSON_IsString(content)) {
            s = lc_error(LC_ERR_ARG, "$.messages[%d].content must be a string or null", i);
            break;
        }
        const char *text = cJSON_IsString(content) ? content->valuestring : "";
        if (!strcmp(role, "system")) {
            if (i != 0) {
                s = lc_error(LC_ERR_ARG, "$.messages[%d]: a system message may only come first", i);
                break;
            }
            sb_puts(&b, "SYSTEM:");
            sb_puts(&b, text);
            started = 1;
        } else if (!strcmp(role, "user")) {
            sb_printf(&b, "%s[Round %d] USER:", started ? " " : "", round++);
            sb_puts(&b, text);
            sb_puts(&b, " ASSISTANT:");
            started = 1;
        } else if (!strcmp(role, "tool")) {
            /* consecutive tool results form one USER turn */
            int first_of_group = !prev || strcmp(str_or(prev, "role", ""), "tool") != 0;
            if (first_of_group) sb_printf(&b, "%s[Round %d] USER:", started ? " " : "", round++);
            else sb_puts(&b, "\n");
            sb_puts(&b, "<longcat_tool_response>");
            sb_puts(&b, text);
            sb_puts(&b, "</longcat_tool_response>");
            if (!m->next || strcmp(str_or(m->next, "role", ""), "tool") != 0) sb_puts(&b, " ASSISTANT:");
            started = 1;
        } else if (!strcmp(role, "assistant")) {
            sb_puts(&b, text);
            const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
            int ti = 0;
            for (const cJSON *tc = cJSON_IsArray(calls) ? calls->child : NULL; tc && !s; tc = tc->next, ti++)
                s = render_tool_call(&b, tc, i, ti);
            sb_puts(&b, "</longcat_s>");
            started = 1;
        } else
            s = lc_error(LC_ERR_ARG, "$.messages[%d].role \"%s\" is not system, user, assistant or tool", i, role);
    }
    (void)n;
    if (!s && b.oom) s = lc_error(LC_ERR_NOMEM, "out of memory rendering the chat");
    if (s) {
        free(b.buf);
        return s;
    }
    *out = b.buf ? b.buf : calloc(1, 1);
    return LC_OK;
}

/* The same rules in Jinja (tested equal to lc_chat_render with @huggingface/jinja). */
/* Literal text is emitted only through {{ '...' }} so whitespace control cannot eat it. */
static const char *k_template =
    "{%- set ns = namespace(round=0, started=false) -%}"
    "{%- if tools is defined and tools -%}"
    "{{- '## Tools\\nYou have access to the following tools: \\n\\n### Tool namespace: function\\n\\n' -}}"
    "{%- for tool in tools -%}"
    "{%- set fn = tool.function if tool.function is defined else tool -%}"
    "{{- '#### Tool name: ' + fn.name + '\\n\\nDescription: ' -}}"
    "{{- fn.description if fn.description is defined and fn.description is not none else '' -}}"
    "{{- '\\n\\nInputSchema: \\n' -}}"
    "{{- (fn.parameters if fn.parameters is defined else none) | tojson(indent=2) -}}"
    "{{- '\\n\\n' -}}"
    "{%- endfor -%}"
    "{{- '**Note**: For each function call, return a json object with function name and arguments within "
    "<longcat_tool_call></longcat_tool_call> XML tags as follows:\\n<longcat_tool_call>\\n"
    "{\"name\": <function-name>, \"arguments\": <args-dict>}\\n</longcat_tool_call>\\n"
    "When multiple functions need to be called simultaneously, each function call should be wrapped in its own "
    "<longcat_tool_call> tag and placed consecutively. For example:\\n<longcat_tool_call>\\n"
    "{\"name\": <function-name>, \"arguments\": <args-dict>}\\n</longcat_tool_call><longcat_tool_call>\\n"
    "{\"name\": <function-name>, \"arguments\": <args-dict>}\\n</longcat_tool_call>\\n\\n## Messages\\n' -}}"
    "{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- set text = m.content if m.content is defined and m.content is not none else '' -%}"
    "{%- if m.role == 'system' -%}"
    "{%- if not loop.first -%}{{- raise_exception('a system message may only come first') -}}{%- endif -%}"
    "{{- 'SYSTEM:' + text -}}{%- set ns.started = true -%}"
    "{%- elif m.role == 'user' -%}"
    "{{- (' ' if ns.started else '') + '[Round ' + ns.round|string + '] USER:' + text + ' ASSISTANT:' -}}"
    "{%- set ns.round = ns.round + 1 -%}{%- set ns.started = true -%}"
    "{%- elif m.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}"
    "{{- (' ' if ns.started else '') + '[Round ' + ns.round|string + '] USER:' -}}{%- set ns.round = ns.round + 1 -%}"
    "{%- else -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<longcat_tool_response>' + text + '</longcat_tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- ' ASSISTANT:' -}}{%- endif -%}"
    "{%- set ns.started = true -%}"
    "{%- elif m.role == 'assistant' -%}"
    "{{- text -}}"
    "{%- if m.tool_calls is defined and m.tool_calls -%}{%- for tc in m.tool_calls -%}"
    "{%- set f = tc.function if tc.function is defined else tc -%}"
    "{{- '<longcat_tool_call>{\"name\": ' + f.name | tojson + ', \"arguments\": ' -}}"
    "{%- if f.arguments is string -%}{{- f.arguments -}}"
    "{%- elif f.arguments is defined -%}{{- f.arguments | tojson -}}"
    "{%- else -%}{{- '{}' -}}{%- endif -%}"
    "{{- '}</longcat_tool_call>' -}}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '</longcat_s>' -}}{%- set ns.started = true -%}"
    "{%- else -%}{{- raise_exception('unknown role ' + m.role) -}}"
    "{%- endif -%}"
    "{%- endfor -%}";

const char *lc_chat_template_jinja(void) { return k_template; }

/* ---------------------------------------------------------------- tool-call parsing */

static const char *k_open = "<longcat_tool_call>", *k_close = "</longcat_tool_call>";

static char *trimmed(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = 0;
    }
    return r;
}

lc_status lc_chat_parse_tool_calls(const char *text, char **content, cJSON **tool_calls) {
    *content = NULL;
    *tool_calls = NULL;
    const char *first = strstr(text, k_open);
    cJSON *calls = first ? cJSON_CreateArray() : NULL;
    int k = 0;
    for (const char *p = first; p; k++) {
        const char *body = p + strlen(k_open), *end = strstr(body, k_close);
        size_t n = end ? (size_t)(end - body) : strlen(body); /* an unterminated last block is still parsed */
        char *js = trimmed(body, n);
        cJSON *j = js ? cJSON_Parse(js) : NULL;
        const cJSON *name = j ? cJSON_GetObjectItemCaseSensitive(j, "name") : NULL;
        if (!cJSON_IsString(name)) { /* not a tool call after all: keep everything as text */
            free(js);
            cJSON_Delete(j);
            cJSON_Delete(calls);
            calls = NULL;
            first = NULL;
            break;
        }
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "arguments");
        char *aj = cJSON_IsString(args) ? lc_strdup(args->valuestring) : cJSON_PrintUnformatted(args ? args : cJSON_GetObjectItem(j, "parameters"));
        cJSON *tc = cJSON_CreateObject();
        char id[32];
        snprintf(id, sizeof id, "call_%08llx", (unsigned long long)((uint64_t)k * 0x9E3779B97F4A7C15ull ^ (uint64_t)strlen(text)) & 0xffffffffull);
        cJSON_AddStringToObject(tc, "id", id);
        cJSON_AddStringToObject(tc, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(tc, "function");
        cJSON_AddStringToObject(fn, "name", name->valuestring);
        cJSON_AddStringToObject(fn, "arguments", aj ? aj : "{}");
        cJSON_AddItemToArray(calls, tc);
        free(aj);
        free(js);
        cJSON_Delete(j);
        p = end ? strstr(end + strlen(k_close), k_open) : NULL;
    }
    size_t head = first ? (size_t)(first - text) : strlen(text);
    char *c = trimmed(text, head);
    if (!c) {
        cJSON_Delete(calls);
        return lc_error(LC_ERR_NOMEM, "out of memory parsing tool calls");
    }
    if (!c[0] && calls) {
        free(c);
        c = NULL;
    }
    *content = c;
    *tool_calls = calls;
    return LC_OK;
}

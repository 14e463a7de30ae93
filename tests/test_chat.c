/* test_chat.c — the LongCat chat format: the native renderer and our Jinja chat_template give
 * identical strings under @huggingface/jinja (system, multi-turn, tools, tool calls with
 * string and object arguments, tool results, unicode), the exact SPEC §5 shapes, tool-call
 * parsing, and errors for malformed messages. */
#include "test.h"
#include "../src/tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

static char *render(const char *json) {
    cJSON *m = cJSON_Parse(json);
    char *out = NULL;
    CHECK_OK(lc_chat_render(m, NULL, &out));
    cJSON_Delete(m);
    return out;
}

static void test_chat_spec_shapes(void) {
    char *a = render("[{\"role\":\"user\",\"content\":\"Q\"}]");
    CHECK(a && !strcmp(a, "[Round 0] USER:Q ASSISTANT:"), "first turn: %s", a);
    char *b = render("[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"Q\"}]");
    CHECK(b && !strcmp(b, "SYSTEM:S [Round 0] USER:Q ASSISTANT:"), "system: %s", b);
    char *c = render("[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"q0\"},"
                     "{\"role\":\"assistant\",\"content\":\"r0\"},{\"role\":\"user\",\"content\":\"q1\"}]");
    CHECK(c && !strcmp(c, "SYSTEM:S [Round 0] USER:q0 ASSISTANT:r0</longcat_s> [Round 1] USER:q1 ASSISTANT:"), "multi-turn: %s", c);
    free(a);
    free(b);
    free(c);
    cJSON *bad = cJSON_Parse("[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"system\",\"content\":\"late\"}]");
    char *out = NULL;
    CHECK(lc_chat_render(bad, NULL, &out) == LC_ERR_ARG && strstr(lc_last_error(), "$.messages[1]"), "%s", lc_last_error());
    cJSON_Delete(bad);
    bad = cJSON_Parse("[{\"role\":\"wizard\",\"content\":\"x\"}]");
    CHECK(lc_chat_render(bad, NULL, &out) == LC_ERR_ARG && strstr(lc_last_error(), "wizard"), "%s", lc_last_error());
    cJSON_Delete(bad);
    bad = cJSON_Parse("[{\"role\":\"user\",\"content\":5}]");
    CHECK(lc_chat_render(bad, NULL, &out) == LC_ERR_ARG && strstr(lc_last_error(), "$.messages[0].content"), "%s", lc_last_error());
    cJSON_Delete(bad);
}

static void test_chat_matches_jinja(void) {
    const char *npm = getenv("LC_NPM");
    char flag[512];
    snprintf(flag, sizeof flag, "%s/.installed", npm ? npm : "");
    if (!npm || !lc_file_exists(flag)) {
        t_skip("npm reference packages not installed");
        return;
    }
    const char *dir = t_tmpdir("chat");
    char tpl[600];
    snprintf(tpl, sizeof tpl, "%s/template.jinja", dir);
    FILE *f = fopen(tpl, "w");
    if (f) {
        fputs(lc_chat_template_jinja(), f);
        fclose(f);
    }
    char *ref = NULL;
    int rc = t_sh(&ref, "node %s/render.mjs %s tests/tokenizer/conversations.json", npm, tpl);
    CHECK(rc == 0, "jinja render failed: %s", ref ? ref : "");
    char *text;
    size_t len;
    CHECK_OK(lc_read_file("tests/tokenizer/conversations.json", &text, &len));
    cJSON *convs = cJSON_ParseWithLength(text, len);
    free(text);
    int i = 0, same = 0;
    char *line = ref;
    for (const cJSON *c = convs ? convs->child : NULL; c && line && rc == 0; c = c->next, i++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        cJSON *want = cJSON_Parse(line);
        line = nl ? nl + 1 : NULL;
        char *mine = NULL;
        CHECK_OK(lc_chat_render(cJSON_GetObjectItem(c, "messages"), cJSON_GetObjectItem(c, "tools"), &mine));
        if (cJSON_IsString(want) && mine && !strcmp(want->valuestring, mine)) same++;
        else {
            char *w = want ? cJSON_Print(want) : NULL;
            t_fail(__FILE__, __LINE__, "conversation %d differs:\n--- native\n%s\n--- jinja\n%s", i, mine ? mine : "(null)",
                   w ? w : "(null)");
            free(w);
        }
        free(mine);
        cJSON_Delete(want);
    }
    printf("    %d/%d conversations identical to @huggingface/jinja\n", same, i);
    CHECK(i == cJSON_GetArraySize(convs) && i > 0, "rendered every conversation");
    cJSON_Delete(convs);
    free(ref);
}

static void test_tool_call_parsing(void) {
    char *content;
    cJSON *calls;
    CHECK_OK(lc_chat_parse_tool_calls("Let me check.\n<longcat_tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"
                                      "</longcat_tool_call><longcat_tool_call>\n{\"name\": \"web_search\", \"arguments\": "
                                      "{\"query\": \"x\"}}\n</longcat_tool_call>",
                                      &content, &calls));
    CHECK(content && !strcmp(content, "Let me check."), "content before the calls: %s", content);
    CHECK(calls && cJSON_GetArraySize(calls) == 2, "two calls");
    const cJSON *fn = calls ? cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 0), "function") : NULL;
    CHECK(fn && !strcmp(cJSON_GetObjectItem(fn, "name")->valuestring, "get_weather") &&
              !strcmp(cJSON_GetObjectItem(fn, "arguments")->valuestring, "{\"city\":\"Paris\"}"),
          "name and arguments (as a JSON string)");
    free(content);
    cJSON_Delete(calls);
    /* only a call: content is NULL; unterminated last block still parses */
    CHECK_OK(lc_chat_parse_tool_calls("<longcat_tool_call>{\"name\": \"f\", \"arguments\": {}}", &content, &calls));
    CHECK(!content && calls && cJSON_GetArraySize(calls) == 1, "unterminated call");
    free(content);
    cJSON_Delete(calls);
    /* not JSON: stays text */
    CHECK_OK(lc_chat_parse_tool_calls("x <longcat_tool_call>not json</longcat_tool_call>", &content, &calls));
    CHECK(content && !calls && strstr(content, "not json"), "invalid call stays text");
    free(content);
    CHECK_OK(lc_chat_parse_tool_calls("plain answer", &content, &calls));
    CHECK(content && !strcmp(content, "plain answer") && !calls, "no calls");
    free(content);
}

static void test_json_dumps(void) {
    cJSON *v = cJSON_Parse("{\"a\": [1, 2.5, -0.125, 1e-7, 1e21, true, null, \"x\\\"\\n\\u0001é\"], \"b\": {}, \"c\": []}");
    char *s = lc_json_dumps(v, 0), *t = lc_json_dumps(v, 2);
    CHECK(s && !strcmp(s, "{\"a\": [1, 2.5, -0.125, 1e-7, 1e+21, true, null, \"x\\\"\\n\\u0001é\"], \"b\": {}, \"c\": []}"), "%s", s);
    CHECK(t && !strcmp(t, "{\n  \"a\": [\n    1,\n    2.5,\n    -0.125,\n    1e-7,\n    1e+21,\n    true,\n    null,\n"
                          "    \"x\\\"\\n\\u0001é\"\n  ],\n  \"b\": {},\n  \"c\": []\n}"),
          "%s", t);
    free(s);
    free(t);
    cJSON_Delete(v);
}

void suite_chat(void) {
    RUN(test_chat_spec_shapes);
    RUN(test_chat_matches_jinja);
    RUN(test_tool_call_parsing);
    RUN(test_json_dumps);
}

/* openai.h — the OpenAI API's JSON, apart from HTTP: parsing and validating a
 * /v1/chat/completions or /v1/completions body into generation parameters (every error names
 * its JSON path and the HTTP status it deserves), and building responses, stream chunks and
 * error objects. */
#ifndef LC_OPENAI_H
#define LC_OPENAI_H

#include "../generate/generate.h"
#include "../tokenizer/tokenizer.h"

#include <cjson/cJSON.h>

#define OAI_MAX_STOP 4

typedef struct {
    int status;          /* HTTP status: 400, 401, 404, 413, 429, 500, 503 ... */
    char type[32];       /* "invalid_request_error", "server_error", ... */
    char code[48];       /* "" or e.g. "context_length_exceeded", "model_not_found" */
    char param[64];      /* "" or the offending parameter (JSON path) */
    char message[512];
} oai_error;

typedef struct {
    int chat;                 /* /v1/chat/completions (1) or /v1/completions (0) */
    char *prompt;             /* the text to tokenize: rendered chat, or the completion prompt */
    int32_t *prompt_ids;      /* a completion prompt given as token ids (then prompt is NULL) */
    int64_t n_prompt_ids;
    int stream, include_usage;
    int64_t max_tokens;       /* 0: until the context is full */
    lc_sampler_params sampling;
    char *stop[OAI_MAX_STOP];
    int n_stop;
    int tools;                /* tool calls in the output become `tool_calls` */
    int ignore_eos;           /* extension (as vLLM): generate max_tokens regardless of EOS */
} oai_request;

/* Parses and validates body[0..len) (must be valid UTF-8 JSON). model_id: the one model this
 * server serves. Returns 0, or the HTTP status with err filled. */
int oai_parse(oai_request *r, const char *body, size_t len, int chat, const char *model_id, oai_error *err);
void oai_request_free(oai_request *r);

/* Sets err and returns status (for callers that build their own errors). */
int oai_fail(oai_error *err, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* {"error": {"message", "type", "param", "code"}} */
char *oai_error_json(const oai_error *err);

/* OpenAI finish_reason for a generation's stop reason. */
const char *oai_finish_reason(lc_stop_reason r);

/* The non-streaming response object. text: the generated text; tool calls are parsed from it
 * when r->tools. */
char *oai_response_json(const oai_request *r, const char *id, long created, const char *model, const char *text,
                        lc_stop_reason stop, int64_t prompt_tokens, int64_t completion_tokens);

/* Streaming: the next piece of text[0..len) that may be sent as content, text[*from ..
 * *from + returned length); *sent (bytes of text dealt with) advances past it. Without tools,
 * everything. With tools, content stops before a <longcat_tool_call> tag (or a suffix that
 * may become one) and whitespace at either end is held back, so the streamed content equals
 * the final response's. */
size_t oai_stream_next(const oai_request *r, const char *text, size_t len, size_t *sent, size_t *from);

/* One stream chunk, "data: {...}\n\n": a content delta (content may be NULL: the opening role
 * delta for chat), or with finish the closing chunk (and for chat with tools, the calls parsed
 * from the whole text as tool_calls deltas before it). */
char *oai_chunk(const oai_request *r, const char *id, long created, const char *model, const char *content,
                size_t content_len, int role);
char *oai_final_chunks(const oai_request *r, const char *id, long created, const char *model, const char *text,
                       size_t sent, lc_stop_reason stop, int64_t prompt_tokens, int64_t completion_tokens);

/* Checks that s[0..n) is UTF-8 (no overlongs, surrogates or values past U+10FFFF); returns the
 * offset of the first bad byte, or n. */
size_t oai_utf8_valid_prefix(const char *s, size_t n);

#endif

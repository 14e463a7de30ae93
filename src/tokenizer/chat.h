/* chat.h — LongCat-Flash chat format (SPEC §5): render OpenAI-style messages (+ tools) to the
 * prompt text natively, the equivalent Jinja chat_template we ship in tokenizer_config.json,
 * and parsing of <longcat_tool_call> blocks in generated text. Shared by CLI and server. */
#ifndef LC_CHAT_H
#define LC_CHAT_H

#include <cjson/cJSON.h>

#include "../base/base.h"

/* messages: [{"role": "system"|"user"|"assistant"|"tool", "content": str|null,
 *             "tool_calls": [{"function": {"name", "arguments": str|obj}}]}, ...];
 * tools: NULL or [{"type": "function", "function": {"name", "description", "parameters"}}].
 * Writes a malloc'd prompt ending in " ASSISTANT:" when the last message is from the user
 * or a tool. Errors name the offending message ($.messages[i].role ...). */
lc_status lc_chat_render(const cJSON *messages, const cJSON *tools, char **out);

/* The Jinja template that renders exactly what lc_chat_render does. */
const char *lc_chat_template_jinja(void);

/* Splits generated text into content (text before the first tool call, trimmed; NULL if
 * empty) and tool_calls (an OpenAI array: [{"id", "type": "function", "function": {"name",
 * "arguments": JSON string}}], NULL if none). A block whose JSON does not parse stays text. */
lc_status lc_chat_parse_tool_calls(const char *text, char **content, cJSON **tool_calls);

/* JSON text as Python's json.dumps / Jinja's tojson prints it: ", " and ": " separators, or
 * with indent > 0 one item per line; non-ASCII kept; numbers as JavaScript prints them. */
char *lc_json_dumps(const cJSON *v, int indent);

#endif

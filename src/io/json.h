/* json.h — reading a JSON file with cJSON, with messages that name the file and byte offset.
 * Knows nothing about what the JSON means. */
#ifndef LC_JSON_H
#define LC_JSON_H

#include <cjson/cJSON.h>

#include "../base/base.h"

/* Parses the file at path into *out (free with cJSON_Delete). */
lc_status lc_json_load(const char *path, cJSON **out);

#endif

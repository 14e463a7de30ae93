/* json.c — lc_json_load: read + parse + locate the error. */
#include "json.h"

#include <stdlib.h>

lc_status lc_json_load(const char *path, cJSON **out) {
    *out = NULL;
    char *text;
    size_t len;
    lc_status s = lc_read_file(path, &text, &len);
    if (s) return s;
    *out = cJSON_ParseWithLength(text, len);
    if (!*out) {
        const char *at = cJSON_GetErrorPtr();
        long off = at ? (long)(at - text) : 0;
        if (off < 0 || (size_t)off > len) off = 0;
        s = lc_error(LC_ERR_FORMAT, "%s: invalid JSON near byte %ld", path, off);
    }
    free(text);
    return s;
}

/* Kernel command line: space-separated `key` or `key=value` tokens (no quoting). */
#include "tiny.h"

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }

bool cmdline_next(const char *cmdline, const char *key, size_t *pos, const char **val, size_t *len)
{
    size_t klen = strlen(key);
    size_t i = *pos;
    while (cmdline[i]) {
        while (is_space(cmdline[i]))
            i++;
        size_t start = i;
        while (cmdline[i] && !is_space(cmdline[i]))
            i++;
        size_t tlen = i - start;
        const char *tok = cmdline + start;
        if (tlen >= klen && memcmp(tok, key, klen) == 0 && (tlen == klen || tok[klen] == '=')) {
            *pos = i;
            *val = tlen == klen ? tok + klen : tok + klen + 1;
            *len = tlen == klen ? 0 : tlen - klen - 1;
            return true;
        }
    }
    *pos = i;
    return false;
}

bool cmdline_get(const char *cmdline, const char *key, const char **val, size_t *len)
{
    size_t pos = 0;
    bool found = false;
    const char *v;
    size_t l;
    while (cmdline_next(cmdline, key, &pos, &v, &l)) {
        found = true;
        *val = v;
        *len = l;
    }
    return found;
}

bool cmdline_has(const char *cmdline, const char *key)
{
    const char *v;
    size_t l;
    return cmdline_get(cmdline, key, &v, &l);
}

bool parse_u64(const char *s, size_t len, u64 *out)
{
    u64 v = 0;
    unsigned base = 10;
    size_t i = 0;
    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    if (i == len)
        return false;
    for (; i < len; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return false;
        if (v > (~0ULL - d) / base)
            return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

bool parse_size(const char *s, size_t len, u64 *out)
{
    unsigned shift = 0;
    if (len > 0) {
        switch (s[len - 1]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        }
    }
    if (shift)
        len--;
    u64 v;
    if (!parse_u64(s, len, &v) || v > (~0ULL >> shift))
        return false;
    *out = v << shift;
    return true;
}

bool cmdline_u64(const char *key, u64 *out)
{
    const char *v;
    size_t l;
    return cmdline_get(boot.cmdline, key, &v, &l) && parse_u64(v, l, out);
}

/*
 * icuuc.dll for wine 8 (Debian 12), which has none: TEST HARNESS ONLY, never shipped.
 *
 * Qt 6.10 and later (PySide6-Essentials 6.11.3 in requirements-windows.txt) link Qt6Core.dll against
 * Windows' own ICU, icuuc.dll, which every Windows 10 from 1703 on and every Windows 11 has in System32:
 * Qt6Core imports 20 ucnv_* functions from it (its QStringConverter uses them for legacy text encodings
 * such as windows-1252 or Shift_JIS; UTF-8/16/32 and Latin-1 are Qt's own code). Without the DLL,
 * Qt6Core.dll does not load and the tray cannot start. check_under_wine.sh compiles this file with
 * mingw-w64 into the temporary wine prefix's system32, like bcryptprimitives.c.
 *
 * What it does: the converters of the single-byte Windows code pages (each byte is one UTF-16 unit, so
 * no state is kept between calls), built from kernel32's MultiByteToWideChar/WideCharToMultiByte, with
 * ICU's default behaviour (an unmappable byte reads U+FFFD, an unmappable character writes the code
 * page's substitute byte). Any other converter name fails to open with U_FILE_ACCESS_ERROR, as a real ICU
 * does for a name it does not know; Qt then reports the encoding as unavailable. Error callbacks set by
 * the caller are stored and handed back, never called. The tray itself only uses UTF-8.
 */
#include <windows.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t UChar;
typedef int32_t UChar32;
typedef int8_t UBool;
typedef int UErrorCode;
typedef int UConverterCallbackReason;
typedef void (*UConverterToUCallback)(void);
typedef void (*UConverterFromUCallback)(void);

enum {
    U_ZERO_ERROR = 0,
    U_ILLEGAL_ARGUMENT_ERROR = 1,
    U_FILE_ACCESS_ERROR = 4,
    U_MEMORY_ALLOCATION_ERROR = 7,
    U_BUFFER_OVERFLOW_ERROR = 15,
    U_UNSUPPORTED_ERROR = 16,
};
#define FAILED_(e) ((e) == NULL || *(e) > U_ZERO_ERROR)

struct known { const char *name; UINT codepage; };

/* The single-byte code pages offered, under ICU's canonical names (ucnv_getAvailableName). */
static const struct known KNOWN[] = {
    {"windows-1250", 1250}, {"windows-1251", 1251}, {"windows-1252", 1252}, {"windows-1253", 1253},
    {"windows-1254", 1254}, {"windows-1255", 1255}, {"windows-1256", 1256}, {"windows-1257", 1257},
    {"windows-1258", 1258}, {"ibm-437", 437}, {"ibm-850", 850}, {"ibm-866", 866},
    {"ISO-8859-2", 28592}, {"ISO-8859-5", 28595}, {"ISO-8859-7", 28597}, {"ISO-8859-15", 28605},
    {"KOI8-R", 20866}, {"KOI8-U", 21866}, {"macintosh", 10000},
};
#define N_KNOWN ((int)(sizeof(KNOWN) / sizeof(KNOWN[0])))

typedef struct UConverter {
    const struct known *known;
    UChar to_u[256];
    UConverterToUCallback to_cb;
    const void *to_ctx;
    UConverterFromUCallback from_cb;
    const void *from_ctx;
} UConverter;

static int same_name(const char *a, const char *b)
{
    /* ICU compares names ignoring case and the characters '-', '_' and ' '. */
    for (;;) {
        while (*a == '-' || *a == '_' || *a == ' ') a++;
        while (*b == '-' || *b == '_' || *b == ' ') b++;
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z') x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z') y += 'a' - 'A';
        if (x != y) return 0;
        if (!x) return 1;
        a++, b++;
    }
}

static const struct known *find(const char *name)
{
    char cp[16];
    if (!name) return NULL;
    for (int i = 0; i < N_KNOWN; i++) {
        wsprintfA(cp, "cp%u", KNOWN[i].codepage);
        if (same_name(name, KNOWN[i].name) || same_name(name, cp)) return &KNOWN[i];
    }
    return NULL;
}

__declspec(dllexport) UConverter *ucnv_open(const char *name, UErrorCode *err)
{
    if (FAILED_(err)) return NULL;
    const struct known *k = find(name);
    if (!k || !IsValidCodePage(k->codepage)) { *err = U_FILE_ACCESS_ERROR; return NULL; }
    UConverter *c = calloc(1, sizeof(*c));
    if (!c) { *err = U_MEMORY_ALLOCATION_ERROR; return NULL; }
    c->known = k;
    for (int b = 0; b < 256; b++) {
        char byte = (char)b;
        WCHAR w;
        if (MultiByteToWideChar(k->codepage, MB_ERR_INVALID_CHARS, &byte, 1, &w, 1) == 1)
            c->to_u[b] = w;
        else
            c->to_u[b] = 0xFFFD;
    }
    return c;
}

__declspec(dllexport) void ucnv_close(UConverter *c) { free(c); }
__declspec(dllexport) void ucnv_reset(UConverter *c) { (void)c; }  /* stateless */
__declspec(dllexport) int8_t ucnv_getMaxCharSize(const UConverter *c) { (void)c; return 1; }

__declspec(dllexport) const char *ucnv_getName(const UConverter *c, UErrorCode *err)
{
    if (FAILED_(err)) return NULL;
    if (!c) { *err = U_ILLEGAL_ARGUMENT_ERROR; return NULL; }
    return c->known->name;
}

__declspec(dllexport) void ucnv_getToUCallBack(const UConverter *c, UConverterToUCallback *action,
                                               const void **context)
{
    *action = c->to_cb;
    *context = c->to_ctx;
}

__declspec(dllexport) void ucnv_getFromUCallBack(const UConverter *c, UConverterFromUCallback *action,
                                                 const void **context)
{
    *action = c->from_cb;
    *context = c->from_ctx;
}

__declspec(dllexport) void ucnv_setToUCallBack(UConverter *c, UConverterToUCallback action, const void *context,
                                               UConverterToUCallback *old_action, const void **old_context,
                                               UErrorCode *err)
{
    if (FAILED_(err)) return;
    if (old_action) *old_action = c->to_cb;
    if (old_context) *old_context = c->to_ctx;
    c->to_cb = action;
    c->to_ctx = context;
}

__declspec(dllexport) void ucnv_setFromUCallBack(UConverter *c, UConverterFromUCallback action,
                                                 const void *context, UConverterFromUCallback *old_action,
                                                 const void **old_context, UErrorCode *err)
{
    if (FAILED_(err)) return;
    if (old_action) *old_action = c->from_cb;
    if (old_context) *old_context = c->from_ctx;
    c->from_cb = action;
    c->from_ctx = context;
}

/* Only ever called from inside an error callback, which this converter never calls. */
__declspec(dllexport) void UCNV_FROM_U_CALLBACK_SUBSTITUTE(const void *ctx, void *args, const UChar *units,
                                                           int32_t length, UChar32 cp,
                                                           UConverterCallbackReason reason, UErrorCode *err)
{
    (void)ctx, (void)args, (void)units, (void)length, (void)cp, (void)reason;
    if (err) *err = U_UNSUPPORTED_ERROR;
}

__declspec(dllexport) void UCNV_TO_U_CALLBACK_SUBSTITUTE(const void *ctx, void *args, const char *units,
                                                         int32_t length, UConverterCallbackReason reason,
                                                         UErrorCode *err)
{
    (void)ctx, (void)args, (void)units, (void)length, (void)reason;
    if (err) *err = U_UNSUPPORTED_ERROR;
}

__declspec(dllexport) void ucnv_cbToUWriteUChars(void *args, const UChar *source, int32_t length,
                                                 int32_t offset_index, UErrorCode *err)
{
    (void)args, (void)source, (void)length, (void)offset_index;
    if (err) *err = U_UNSUPPORTED_ERROR;
}

__declspec(dllexport) void ucnv_cbFromUWriteUChars(void *args, const UChar **source, const UChar *limit,
                                                   int32_t offset_index, UErrorCode *err)
{
    (void)args, (void)source, (void)limit, (void)offset_index;
    if (err) *err = U_UNSUPPORTED_ERROR;
}

__declspec(dllexport) void ucnv_toUnicode(UConverter *c, UChar **target, const UChar *target_limit,
                                          const char **source, const char *source_limit, int32_t *offsets,
                                          UBool flush, UErrorCode *err)
{
    (void)flush;
    if (FAILED_(err)) return;
    if (!c || !target || !source) { *err = U_ILLEGAL_ARGUMENT_ERROR; return; }
    const unsigned char *s = (const unsigned char *)*source;
    UChar *t = *target;
    int32_t i = 0;
    while ((const char *)s < source_limit && t < target_limit) {
        *t++ = c->to_u[*s++];
        if (offsets) offsets[i] = i;
        i++;
    }
    if ((const char *)s < source_limit) *err = U_BUFFER_OVERFLOW_ERROR;
    *source = (const char *)s;
    *target = t;
}

__declspec(dllexport) void ucnv_fromUnicode(UConverter *c, char **target, const char *target_limit,
                                            const UChar **source, const UChar *source_limit, int32_t *offsets,
                                            UBool flush, UErrorCode *err)
{
    (void)flush;
    if (FAILED_(err)) return;
    if (!c || !target || !source) { *err = U_ILLEGAL_ARGUMENT_ERROR; return; }
    const UChar *s = *source;
    char *t = *target;
    int32_t i = 0;
    while (s < source_limit && t < target_limit) {
        WCHAR w = *s++;
        char byte;
        BOOL used_default = FALSE;
        /* A surrogate pair cannot be in a single-byte code page: each half becomes the substitute. */
        if (WideCharToMultiByte(c->known->codepage, WC_NO_BEST_FIT_CHARS, &w, 1, &byte, 1, NULL,
                                &used_default) != 1)
            byte = '?';
        *t++ = byte;
        if (offsets) offsets[i] = i;
        i++;
    }
    if (s < source_limit) *err = U_BUFFER_OVERFLOW_ERROR;
    *source = s;
    *target = t;
}

__declspec(dllexport) int32_t ucnv_toUCountPending(const UConverter *c, UErrorCode *err)
{
    (void)c, (void)err;
    return 0;
}

__declspec(dllexport) int32_t ucnv_fromUCountPending(const UConverter *c, UErrorCode *err)
{
    (void)c, (void)err;
    return 0;
}

__declspec(dllexport) const char *ucnv_getStandardName(const char *name, const char *standard, UErrorCode *err)
{
    (void)standard;
    if (FAILED_(err)) return NULL;
    const struct known *k = find(name);
    return k ? k->name : NULL;
}

__declspec(dllexport) int32_t ucnv_countAvailable(void) { return N_KNOWN; }

__declspec(dllexport) const char *ucnv_getAvailableName(int32_t n)
{
    return n >= 0 && n < N_KNOWN ? KNOWN[n].name : NULL;
}

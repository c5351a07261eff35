/* Hugging Face tokenizer.json loader (byte-level BPE). */
#include "tok_internal.h"

pt_status tok_load_hf(const char *path, const char *name, pt_tokenizer **out)
{
    (void)name;
    *out = NULL;
    return pt_fail(PT_ENOTSUP, "%s: tokenizer.json files are not supported by this build yet", path);
}

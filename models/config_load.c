/* pt_model_config_load: a model named on the command line, whatever it is — a preset (config.c),
 * pipetrain's JSON config (config.c), or a Hugging Face config.json / model directory
 * (hf_llama.c). Kept apart from both so that neither file depends on the other's loader. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config_internal.h"
#include "pipetrain/json.h"
#include "pipetrain/model.h"

pt_status pt_model_config_load(const char *name_or_path, pt_model_config *out)
{
    memset(out, 0, sizeof(*out));
    if (!name_or_path || !name_or_path[0])
        return pt_fail(PT_EINVAL, "no model given; name a preset (gpt2-tiny, gpt2, llama-tiny, llama3-8b, ...), a JSON "
                                  "config or a Hugging Face model directory");
    if (pt__model_config_preset(name_or_path, out))
        return PT_OK;
    struct stat sb;
    if (stat(name_or_path, &sb) != 0) {
        char list[512] = "";
        for (const char *const *p = pt_model_preset_names(); *p; p++) {
            size_t len = strlen(list);
            snprintf(list + len, sizeof(list) - len, "%s%s", p == pt_model_preset_names() ? "" : ", ", *p);
        }
        return pt_fail(PT_EINVAL, "model \"%s\" is neither a preset nor a readable JSON config file (%s); presets: %s",
                       name_or_path, strerror(errno), list);
    }
    if (S_ISDIR(sb.st_mode)) /* a Hugging Face model directory (models/hf_llama.c) */
        return pt_model_config_from_hf(name_or_path, out);
    cJSON *root = NULL;
    PT_CHECK(pt_json_read_file(name_or_path, &root));
    if (cJSON_HasObjectItem(root, "model_type") || cJSON_HasObjectItem(root, "architectures")) {
        cJSON_Delete(root); /* a Hugging Face config.json */
        return pt_model_config_from_hf(name_or_path, out);
    }
    pt_status st = pt_model_config_from_json(root, name_or_path, out);
    cJSON_Delete(root);
    return st;
}

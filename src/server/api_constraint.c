/* The request fields that constrain the answer's form: response_format (OpenAI),
 * grammar and json_schema (llama.cpp), and function calling (tools, tool_choice,
 * parallel_tool_calls). They become one gen_params constraint, compiled by the
 * engine, and the tools described in the prompt. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

/* Only one field may say what the answer looks like. */
static int set_constraint(chat_request *out, const char *param, enum gen_constraint kind, const char *text,
                          size_t len, api_error *e)
{
    if (out->constraint_param)
        return api_fail(e, 400, param, "'%s' cannot be combined with '%s': send one constraint on the answer",
                        param, out->constraint_param);
    out->constraint_param = param;
    out->params.constraint = kind;
    out->params.constraint_text = text;
    out->params.constraint_len = len;
    return 0;
}

/* A schema is handed to the engine as compact JSON text (key order kept). */
static int set_schema(chat_request *out, const char *param, json_t *schema, api_error *e)
{
    if (!json_is_object(schema) && !json_is_boolean(schema))
        return api_fail(e, 400, param, "'%s' must be a JSON Schema object, not %s", param,
                        api_json_type_name(schema));
    char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (api_request_own(out, text, e) < 0)
        return -1;
    return set_constraint(out, param, GEN_CONSTRAINT_JSON_SCHEMA, text, strlen(text), e);
}

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > API_MAX_TOOL_NAME)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static int check_keys(json_t *object, const char *const *keys, size_t n, const char *param, api_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach(object, key, v) {
        size_t i = 0;
        while (i < n && strcmp(key, keys[i]))
            i++;
        if (i == n)
            return api_fail(e, 400, param, "'%s': unrecognized key '%s'", param, key);
    }
    return 0;
}

/* {"type":"json_schema","json_schema":{"name","description","schema","strict"}} */
static int parse_json_schema_format(json_t *format, chat_request *out, api_error *e)
{
    const char *param = "response_format";
    json_t *js = json_object_get(format, "json_schema");
    if (!json_is_object(js))
        return api_fail(e, 400, param, "'response_format.json_schema' is required and must be an object");
    static const char *const keys[] = {"name", "description", "schema", "strict"};
    if (check_keys(js, keys, 4, "response_format.json_schema", e) < 0)
        return -1;
    json_t *name = json_object_get(js, "name");
    if (!json_is_string(name) || !valid_name(json_string_value(name), json_string_length(name)))
        return api_fail(e, 400, param, "'response_format.json_schema.name' must be 1 to %d letters, digits, "
                        "'_' or '-'", API_MAX_TOOL_NAME);
    json_t *description = api_json_optional(js, "description"), *strict = api_json_optional(js, "strict");
    if (description && !json_is_string(description))
        return api_fail(e, 400, param, "'response_format.json_schema.description' must be a string");
    if (strict && !json_is_boolean(strict))
        return api_fail(e, 400, param, "'response_format.json_schema.strict' must be a boolean");
    json_t *schema = api_json_optional(js, "schema");
    if (!schema)
        return api_fail(e, 400, param, "'response_format.json_schema.schema' is required");
    return set_schema(out, param, schema, e);
}

static int parse_response_format(json_t *root, chat_request *out, api_error *e)
{
    json_t *format = api_json_optional(root, "response_format");
    if (!format)
        return 0;
    const char *param = "response_format";
    if (!json_is_object(format))
        return api_fail(e, 400, param, "'%s' must be an object, not %s", param, api_json_type_name(format));
    json_t *type = json_object_get(format, "type");
    if (!json_is_string(type))
        return api_fail(e, 400, param, "'response_format.type' is required and must be a string");
    const char *t = json_string_value(type);
    if (!strcmp(t, "json_schema"))
        return parse_json_schema_format(format, out, e);
    static const char *const keys[] = {"type"};
    if (check_keys(format, keys, 1, param, e) < 0)
        return -1;
    if (!strcmp(t, "text"))
        return 0;
    if (!strcmp(t, "json_object"))
        return set_constraint(out, param, GEN_CONSTRAINT_JSON_OBJECT, NULL, 0, e);
    return api_fail(e, 400, param, "'response_format.type' must be 'text', 'json_object' or 'json_schema'");
}

/* llama.cpp's extensions: grammar (GBNF text) and json_schema (a schema object). */
static int parse_llama_constraints(json_t *root, chat_request *out, api_error *e)
{
    json_t *gbnf = api_json_optional(root, "grammar");
    if (gbnf) {
        if (!json_is_string(gbnf) || json_string_length(gbnf) == 0)
            return api_fail(e, 400, "grammar", "'grammar' must be a non-empty string of GBNF rules");
        if (set_constraint(out, "grammar", GEN_CONSTRAINT_GBNF, json_string_value(gbnf), json_string_length(gbnf),
                           e) < 0)
            return -1;
    }
    json_t *schema = api_json_optional(root, "json_schema");
    if (schema)
        return set_schema(out, "json_schema", schema, e);
    return 0;
}

/* ---- tools ------------------------------------------------------------------------------ */

static int parse_tool(json_t *item, size_t i, chat_tool *tool, chat_request *out, api_error *e)
{
    char param[48];
    snprintf(param, sizeof param, "tools[%zu]", i);
    json_t *type = json_object_get(item, "type"), *fn = json_object_get(item, "function");
    if (!json_is_object(item) || !json_is_string(type))
        return api_fail(e, 400, param, "'%s' must be {\"type\":\"function\",\"function\":{...}}", param);
    if (strcmp(json_string_value(type), "function"))
        return api_fail(e, 400, param, "'%s': tools of type '%s' are not supported; only 'function'", param,
                        json_string_value(type));
    static const char *const item_keys[] = {"type", "function"};
    static const char *const fn_keys[] = {"name", "description", "parameters", "strict"};
    if (check_keys(item, item_keys, 2, param, e) < 0)
        return -1;
    if (!json_is_object(fn))
        return api_fail(e, 400, param, "'%s.function' is required and must be an object", param);
    if (check_keys(fn, fn_keys, 4, param, e) < 0)
        return -1;
    json_t *name = json_object_get(fn, "name"), *description = api_json_optional(fn, "description"),
           *parameters = api_json_optional(fn, "parameters"), *strict = api_json_optional(fn, "strict");
    if (!json_is_string(name) || !valid_name(json_string_value(name), json_string_length(name)))
        return api_fail(e, 400, param, "'%s.function.name' must be 1 to %d letters, digits, '_' or '-'", param,
                        API_MAX_TOOL_NAME);
    if (description && !json_is_string(description))
        return api_fail(e, 400, param, "'%s.function.description' must be a string", param);
    if (strict && !json_is_boolean(strict))
        return api_fail(e, 400, param, "'%s.function.strict' must be a boolean", param);
    if (parameters && !json_is_object(parameters))
        return api_fail(e, 400, param, "'%s.function.parameters' must be a JSON Schema object", param);
    for (size_t k = 0; k < i; k++)
        if (out->tools[k].name_len == json_string_length(name) &&
            !memcmp(out->tools[k].name, json_string_value(name), out->tools[k].name_len))
            return api_fail(e, 400, param, "'%s': another tool has the name '%s'", param, json_string_value(name));
    *tool = (chat_tool){json_string_value(name), json_string_length(name), NULL, 0, NULL, 0};
    if (description) {
        tool->description = json_string_value(description);
        tool->description_len = json_string_length(description);
    }
    if (parameters) {
        char *text = json_dumps(parameters, JSON_COMPACT);
        if (api_request_own(out, text, e) < 0)
            return -1;
        tool->parameters = text;
        tool->parameters_len = strlen(text);
    }
    return 0;
}

static int parse_tools(json_t *root, chat_request *out, api_error *e)
{
    json_t *tools = api_json_optional(root, "tools");
    if (!tools)
        return 0;
    if (!json_is_array(tools))
        return api_fail(e, 400, "tools", "'tools' must be an array, not %s", api_json_type_name(tools));
    size_t n = json_array_size(tools);
    if (n > API_MAX_TOOLS)
        return api_fail(e, 400, "tools", "'tools' may hold at most %d functions", API_MAX_TOOLS);
    if (n == 0)
        return 0;
    out->tools = calloc(n, sizeof *out->tools);
    if (!out->tools)
        return api_fail(e, 500, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (parse_tool(json_array_get(tools, i), i, &out->tools[i], out, e) < 0)
            return -1;
        out->n_tools = i + 1;
    }
    return 0;
}

static int parse_tool_choice(json_t *root, chat_request *out, api_error *e)
{
    json_t *choice = api_json_optional(root, "tool_choice");
    out->tool_choice = out->n_tools ? API_TOOLS_AUTO : API_TOOLS_NONE;
    if (!choice)
        return 0;
    const char *param = "tool_choice";
    if (json_is_string(choice)) {
        const char *c = json_string_value(choice);
        if (!strcmp(c, "none")) {
            out->tool_choice = API_TOOLS_NONE;
            return 0;
        }
        if (strcmp(c, "auto") && strcmp(c, "required"))
            return api_fail(e, 400, param, "'tool_choice' must be 'none', 'auto', 'required' or "
                            "{\"type\":\"function\",\"function\":{\"name\":...}}");
        if (!out->n_tools)
            return api_fail(e, 400, param, "'tool_choice' is only allowed when 'tools' are specified");
        out->tool_choice = !strcmp(c, "auto") ? API_TOOLS_AUTO : API_TOOLS_REQUIRED;
        return 0;
    }
    json_t *type = json_object_get(choice, "type"), *fn = json_object_get(choice, "function");
    json_t *name = json_object_get(fn, "name");
    if (!json_is_object(choice) || !json_is_string(type) || strcmp(json_string_value(type), "function") ||
        !json_is_string(name))
        return api_fail(e, 400, param, "'tool_choice' must be 'none', 'auto', 'required' or "
                        "{\"type\":\"function\",\"function\":{\"name\":...}}");
    if (!out->n_tools)
        return api_fail(e, 400, param, "'tool_choice' is only allowed when 'tools' are specified");
    for (size_t i = 0; i < out->n_tools; i++) {
        if (out->tools[i].name_len == json_string_length(name) &&
            !memcmp(out->tools[i].name, json_string_value(name), out->tools[i].name_len)) {
            out->tool_choice = API_TOOLS_NAMED;
            out->named_tool = i;
            return 0;
        }
    }
    return api_fail(e, 400, param, "'tool_choice' names a function that is not in 'tools'");
}

int api_parse_constraint(json_t *root, chat_request *out, api_error *e)
{
    bool parallel = true; /* OpenAI's default */
    json_t *ptc = api_json_optional(root, "parallel_tool_calls");
    if (ptc && !json_is_boolean(ptc))
        return api_fail(e, 400, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean, not %s",
                        api_json_type_name(ptc));
    if (ptc)
        parallel = json_is_true(ptc);
    if (parse_tools(root, out, e) < 0 || parse_tool_choice(root, out, e) < 0)
        return -1;
    if (out->tool_choice != API_TOOLS_NONE) {
        out->tool_set = (chat_tools){out->tools, out->n_tools, parallel && out->tool_choice != API_TOOLS_NAMED};
        out->params.tools = &out->tool_set;
        char *schema = api_tool_call_schema(out);
        if (api_request_own(out, schema, e) < 0 ||
            set_constraint(out, "tools", GEN_CONSTRAINT_JSON_SCHEMA, schema, strlen(schema), e) < 0)
            return -1;
        out->params.constraint_lazy = out->tool_choice == API_TOOLS_AUTO;
    }
    /* The tools' constraint is set first, so that a second one names its own field. */
    return parse_response_format(root, out, e) < 0 ? -1 : parse_llama_constraints(root, out, e);
}

/* ---- the schema of a call ---------------------------------------------------------------- */

/* {"type":"object","properties":{"name":{"const":N},"parameters":P},"required":[...],
 *  "additionalProperties":false}: the form the prompt asks the model to answer in. */
static json_t *call_schema(const chat_tool *tool)
{
    json_t *params;
    if (tool->parameters) {
        params = json_loadb(tool->parameters, tool->parameters_len, 0, NULL);
    } else {
        params = json_pack("{s:s, s:{}, s:b}", "type", "object", "properties", "additionalProperties", 0);
    }
    if (!params)
        return NULL;
    json_t *name = json_stringn(tool->name, tool->name_len);
    return json_pack("{s:s, s:{s:{s:o}, s:o}, s:[s, s], s:b}", "type", "object", "properties",
                     CHAT_TOOL_CALL_NAME_KEY, "const", name, CHAT_TOOL_CALL_ARGUMENTS_KEY, params, "required",
                     CHAT_TOOL_CALL_NAME_KEY, CHAT_TOOL_CALL_ARGUMENTS_KEY, "additionalProperties", 0);
}

char *api_tool_call_schema(const chat_request *r)
{
    json_t *one;
    if (r->tool_choice == API_TOOLS_NAMED) {
        one = call_schema(&r->tools[r->named_tool]);
    } else if (r->n_tools == 1) {
        one = call_schema(&r->tools[0]);
    } else {
        json_t *any = json_array();
        for (size_t i = 0; any && i < r->n_tools; i++)
            if (json_array_append_new(any, call_schema(&r->tools[i])) < 0) {
                json_decref(any);
                any = NULL;
            }
        one = any ? json_pack("{s:o}", "anyOf", any) : NULL;
    }
    if (!one)
        return NULL;
    json_t *schema = one;
    if (r->tool_set.parallel) {
        json_t *list = json_pack("{s:s, s:O, s:i, s:i}", "type", "array", "items", one, "minItems", 1,
                                 "maxItems", API_MAX_PARALLEL_CALLS);
        if (!list) {
            json_decref(one);
            return NULL;
        }
        /* o takes both references, also when it fails */
        schema = json_pack("{s:[o, o]}", "anyOf", one, list);
    }
    if (!schema)
        return NULL;
    char *text = json_dumps(schema, JSON_COMPACT);
    json_decref(schema);
    return text;
}

/* The schemas of the property test (tests/e2e/grammar_schemas.sh validates what the
 * random walks produce with python3-jsonschema). */
#ifndef ELLIOTT_TESTS_GRAMMAR_SCHEMAS_H
#define ELLIOTT_TESTS_GRAMMAR_SCHEMAS_H

static const char *const property_schemas[] = {
    "{\"type\":\"string\"}",
    "{\"type\":\"integer\",\"minimum\":-50,\"maximum\":50}",
    "{\"type\":\"number\",\"minimum\":0.5,\"exclusiveMaximum\":99.5}",
    "{\"type\":[\"boolean\",\"null\"]}",
    "{\"enum\":[\"red\",\"green\",\"blue\",\"green-blue\",42,null]}",
    "{\"const\":{\"kind\":\"fixed\",\"n\":[1,2]}}",
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"},\"tags\":{"
    "\"type\":\"array\",\"items\":{\"type\":\"string\"}}},\"required\":[\"id\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"user\":{\"type\":\"object\",\"properties\":{\"first\":{\"type\":"
    "\"string\"},\"last\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150}},"
    "\"required\":[\"first\",\"last\"],\"additionalProperties\":false},\"scores\":{\"type\":\"array\",\"items\":{"
    "\"type\":\"number\"},\"maxItems\":4}},\"required\":[\"user\",\"scores\"],\"additionalProperties\":false}",
    "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":5}",
    "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"boolean\"}],\"items\":false,"
    "\"minItems\":1}",
    "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":5},{\"type\":\"integer\",\"minimum\":100}]}",
    "{\"oneOf\":[{\"type\":\"boolean\"},{\"type\":\"array\",\"items\":{\"type\":\"null\"},\"maxItems\":2}]}",
    "{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},\"r\":{\"type\":"
    "\"number\",\"minimum\":0}},\"required\":[\"kind\",\"r\"],\"additionalProperties\":false},{\"type\":"
    "\"object\",\"properties\":{\"kind\":{\"const\":\"rect\"},\"w\":{\"type\":\"integer\"},\"h\":{\"type\":"
    "\"integer\"}},\"required\":[\"kind\",\"w\",\"h\"],\"additionalProperties\":false}]}",
    "{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]},{"
    "\"properties\":{\"b\":{\"enum\":[\"x\",\"y\"]}},\"required\":[\"b\"]}]}",
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"value\":{\"type\":\"integer\"},\"children\":{"
    "\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},\"required\":[\"value\"],"
    "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}",
    "{\"definitions\":{\"point\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},\"y\":{\"type\":"
    "\"number\"}},\"required\":[\"x\",\"y\"],\"additionalProperties\":false}},\"type\":\"array\",\"items\":{"
    "\"$ref\":\"#/definitions/point\"},\"maxItems\":3}",
    "{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-[0-9]{3}$\"}",
    "{\"type\":\"string\",\"pattern\":\"[0-9]$\"}",
    "{\"type\":\"string\",\"pattern\":\"^(\\\\d{3}\\\\.){2}[a-f]?\\\\s*(yes|no)$\"}",
    "{\"type\":\"string\",\"format\":\"date\"}",
    "{\"type\":\"string\",\"format\":\"date-time\"}",
    "{\"type\":\"string\",\"format\":\"uuid\"}",
    "{\"type\":\"string\",\"format\":\"email\"}",
    "{\"type\":\"string\",\"format\":\"time\"}",
    "{\"type\":\"object\",\"properties\":{\"fixed\":{\"type\":\"boolean\"}},\"additionalProperties\":{\"type\":"
    "\"integer\",\"maximum\":9}}",
    "{\"type\":\"object\",\"additionalProperties\":true,\"properties\":{\"k\":{\"type\":\"null\"}},\"required\":"
    "[\"k\"]}",
    "{\"type\":\"string\",\"minLength\":3,\"maxLength\":8}",
    "{\"type\":\"number\",\"exclusiveMinimum\":-10.25,\"maximum\":-3}",
    "{\"type\":\"integer\",\"exclusiveMinimum\":999,\"exclusiveMaximum\":123456}",
    "{\"type\":\"object\",\"properties\":{\"name\":{\"enum\":[\"get_weather\",\"search\"]},\"arguments\":{"
    "\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"celsius\","
    "\"fahrenheit\"]}},\"required\":[\"location\"],\"additionalProperties\":false}},\"required\":[\"name\","
    "\"arguments\"],\"additionalProperties\":false}",
    "{\"type\":\"object\"}",
    "{\"type\":\"array\",\"items\":{\"enum\":[\"alpha\",\"beta\",\"gamma\",\"delta\"]},\"maxItems\":6}",
    "{\"type\":\"object\",\"properties\":{\"when\":{\"type\":\"string\",\"format\":\"date\"},\"who\":{\"type\":"
    "\"string\",\"pattern\":\"^@[a-z_]{1,15}$\"},\"n\":{\"type\":[\"integer\",\"null\"],\"minimum\":1}},"
    "\"required\":[\"when\",\"who\",\"n\"],\"additionalProperties\":false}",
};

enum { N_PROPERTY_SCHEMAS = sizeof property_schemas / sizeof property_schemas[0] };

#endif

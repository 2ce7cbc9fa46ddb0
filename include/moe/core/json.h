// JSON for the library's outputs (metrics.jsonl, results.json, moe-score --json): nlohmann/json
// with keys in insertion order. json_line() writes one record per line the way Python's
// json.dumps does by default (", " and ": " separators), which sacreBLEU's JSON output and the
// metrics.jsonl lines share; non-finite numbers become null (JSON has no NaN).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace moe {

using Json = nlohmann::ordered_json;

/// One line: {"a": 1, "b": [1, 2]} (Python json.dumps separators; UTF-8 kept as is).
std::string json_line(const Json& value);

}  // namespace moe

// JSON text from nlohmann::json that never throws on strings: a path or name that is not valid UTF-8
// (a directory named in Latin-1, a hostile file name) would make dump() throw type_error 316 and fail a
// run at its first checkpoint or metrics line. Invalid bytes become U+FFFD instead: the text is valid
// JSON for every reader, and only that string loses the bytes.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace mc {

// Json: nlohmann::json or nlohmann::ordered_json.
template <class Json>
std::string json_text(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace mc

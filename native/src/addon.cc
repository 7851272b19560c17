// Module entry: gathers the exports of every source file into the addon's object.
#include "common.h"

namespace dpo {
namespace {

napi_value init(napi_env env, napi_value exports) {
  std::vector<Export> all;
  exports_tensor(all);
  exports_dispatch(all);
  exports_autograd(all);
  exports_runtime(all);
  exports_io(all);
  exports_image(all);
  exports_dist(all);
  std::vector<napi_property_descriptor> props;
  for (const auto& [name, fn] : all)
    props.push_back({name, nullptr, fn, nullptr, nullptr, nullptr, napi_enumerable, nullptr});
  napi_define_properties(env, exports, props.size(), props.data());
  return exports;
}

}  // namespace
}  // namespace dpo

NAPI_MODULE_INIT() { return dpo::init(env, exports); }

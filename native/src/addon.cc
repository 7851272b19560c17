// Module entry: gathers the exports of every source file into the addon's object.
#include "common.h"

namespace dpo {
namespace {

napi_value init(napi_env env, napi_value exports) {
  // NNPACK off, as torch.backends.nnpack.set_flags(False): on x86 PyTorch picks oneDNN for every
  // convolution NNPACK could take (NNPACK wants batch >= 16, oneDNN takes batch > 1 first), so no
  // result changes; but each batch-1 convolution asks whether NNPACK is available, and on CPUs it
  // does not support libtorch 2.13 logs "Could not initialize NNPACK!" on every such call (sampling
  // and VAE decoding printed thousands of lines).
  at::globalContext().setUserEnabledNNPACK(false);
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

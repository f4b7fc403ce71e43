// The production model loader. Kept in its own object so the server links
// without the model module until it is needed.
#include "fieldfm/serve.h"

namespace fieldfm {

ModelLoader DefaultModelLoader() {
  return [](const std::string& path) { return LoadPredictor(path); };
}

}  // namespace fieldfm

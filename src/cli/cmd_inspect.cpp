// `fieldfm inspect MODEL`: type, sizes, hyperparameters, version and the graph.
#include <cstdio>

#include "cli/command.h"
#include "fieldfm/train.h"

namespace fieldfm::cli {
namespace {

Register kInspect{{"inspect", "Describe a model file", [](CLI::App& app) -> Runner {
                     auto path = std::make_shared<std::string>();
                     auto json = std::make_shared<bool>(false);
                     app.add_option("MODEL", *path, "model file")->required();
                     app.add_flag("--json", *json, "metadata as one JSON object, no graph");
                     return [path, json]() -> Status {
                       FIELDFM_ASSIGN_OR_RETURN(std::shared_ptr<Model> m, LoadModel(*path, /*map_in_place=*/true));
                       if (*json) {
                         std::printf("%s\n", ModelMetadata(*m).dump().c_str());
                       } else {
                         std::printf("%s\n\ngraph:\n%s", ModelMetadata(*m).dump(2).c_str(), DescribeGraph(*m).c_str());
                       }
                       return Status::Ok();
                     };
                   }, 50}};

}  // namespace
}  // namespace fieldfm::cli

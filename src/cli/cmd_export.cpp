// `fieldfm export MODEL -o latent.tsv`: latent vectors with field and feature ids.
#include "cli/command.h"
#include "fieldfm/train.h"

namespace fieldfm::cli {
namespace {

Register kExport{{"export", "Write a model's latent vectors as TSV", [](CLI::App& app) -> Runner {
                    auto path = std::make_shared<std::string>();
                    auto out = std::make_shared<std::string>();
                    app.add_option("MODEL", *path, "model file")->required();
                    app.add_option("-o,--output", *out, "output TSV")->required();
                    return [path, out]() -> Status {
                      FIELDFM_ASSIGN_OR_RETURN(std::shared_ptr<Model> m, LoadModel(*path, /*map_in_place=*/true));
                      return ExportLatentTsv(*m, *out);
                    };
                  }, 60}};

}  // namespace
}  // namespace fieldfm::cli

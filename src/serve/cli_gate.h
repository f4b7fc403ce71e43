// `fieldfm serve` needs LoadPredictor (model module) and FeaturePipeline
// (data module). Until both are merged into the same tree the fieldfm binary
// cannot link with the command in, so the command and its end-to-end test
// compile to nothing while this is 0. Set it to 1 once they are merged.
#pragma once

#ifndef FIELDFM_SERVE_CLI
#define FIELDFM_SERVE_CLI 0
#endif

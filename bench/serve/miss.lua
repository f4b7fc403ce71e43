-- One instance per request, new random features each time: every request
-- misses the cache and goes through the batcher to the model.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua"
require "common"

function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
end

function request()
  return wrk.format(nil, nil, nil, predict_body({random_instance()}))
end

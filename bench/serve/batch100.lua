-- 100 instances per request, all new (cache misses): one batched Predict of
-- 100 rows per request. Pre-built bodies keep wrk's own Lua cost out of the way.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua"
require "common"

local bodies = {}
local next_body = 1

function init(args)
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
  for b = 1, 200 do
    local instances = {}
    for i = 1, 100 do instances[i] = random_instance() end
    bodies[b] = wrk.format(nil, nil, nil, predict_body(instances))
  end
end

-- 200 bodies cycle; run.sh serves this scenario with --cache-entries 0 so
-- repeats still reach the model.
function request()
  local r = bodies[next_body]
  next_body = next_body % #bodies + 1
  return r
end

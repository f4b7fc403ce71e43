-- Shared by the fieldfm serve wrk scripts: one instance as a libffm token string
-- of FIELDS one-hot features (field i, index drawn from a per-field range).
FIELDS = 39
INDEX_SPACE = 1000000

function random_instance()
  local tokens = {}
  for f = 0, FIELDS - 1 do
    tokens[#tokens + 1] = f .. ":" .. math.random(0, INDEX_SPACE - 1) .. ":1"
  end
  return '"' .. table.concat(tokens, " ") .. '"'
end

function predict_body(instances)
  return '{"instances":[' .. table.concat(instances, ",") .. ']}'
end

wrk.method = "POST"
wrk.path = "/v1/predict"
wrk.headers["Content-Type"] = "application/json"

-- Counts non-200 answers so a run that "went fast" by failing is visible.
local failures = 0
function response(status, headers, body)
  if status ~= 200 then
    failures = failures + 1
    if failures <= 3 then io.stderr:write("HTTP " .. status .. ": " .. body .. "\n") end
  end
end

-- wrk script: GET tile paths from the file named by BENCH_TILE_LIST (one path per line, e.g. tile/0/x001/234),
-- round robin, each thread starting at another offset (bench/bench_witness.py).

local paths = {}
local i = 0

function init(args)
  for line in io.lines(os.getenv("BENCH_TILE_LIST")) do
    paths[#paths + 1] = line
  end
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", os.getenv("BENCH_TILE_PREFIX") .. paths[i])
end

-- wrk script: prints more latency percentiles (ms) than --latency does, on one line, for comparing the
-- shape of two latency distributions (docs/performance.md):
--   wrk -t1 -c64 -d6s -s bench/https-proxy/percentiles.lua https://127.0.0.1:PORT/
done = function(summary, latency, requests)
  local s = ""
  for _, p in ipairs({50, 60, 70, 75, 80, 85, 88, 90, 92, 95, 97, 99, 99.9}) do
    s = s .. string.format("p%s=%.2f ", p, latency:percentile(p) / 1000)
  end
  io.write(s .. "\n")
end

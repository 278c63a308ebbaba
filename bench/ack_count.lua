-- wrk script: bench/signed_webhooks.lua, each thread stopping once it has had an answer
-- to every body it holds, so a run sends a fixed number of requests (bench/ack_cpu.py).
-- wrk itself runs on until its duration: the thread prints a line when it stops, so the
-- caller can read its target's CPU then and end wrk with SIGINT (wrk still reports).
--
--   wrk -t 1 -c C -d 300s -s bench/ack_count.lua URL -- BODIES_FILE 1

local here = debug.getinfo(1, "S").source:sub(2)
dofile((here:gsub("ack_count%.lua$", "signed_webhooks.lua")))

answered = 0

function response(status, headers, body)
  answered = answered + 1
  if answered >= count then
    wrk.thread:stop()
    io.write("ACK_COUNT_DONE\n")
    io.stdout:flush()
  end
end

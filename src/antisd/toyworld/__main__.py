"""``python -m antisd.toyworld``: build (or find cached) the toy base policy; see ``base_policy``."""

from antisd.toyworld.base_policy import main

if __name__ == "__main__":
    main()

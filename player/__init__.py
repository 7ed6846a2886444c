"""Players for the ward screen and loudspeakers, and Vietnamese text handling."""
